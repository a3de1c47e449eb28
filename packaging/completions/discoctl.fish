# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_discoctl_global_optspecs
    string join \n endpoints= prefix= user= password= cacert= cert= key= request-timeout= o/output= actor= h/help V/version
end

function __fish_discoctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_discoctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_discoctl_using_subcommand
    set -l cmd (__fish_discoctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c discoctl -n "__fish_discoctl_needs_command" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_needs_command" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_needs_command" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_needs_command" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_needs_command" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_needs_command" -s V -l version -d 'Print version'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "endpoint" -d 'Register or remove endpoints by hand'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "route" -d 'Point slots at versions'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "app" -d 'An app\'s frontend settings'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "promote" -d 'Canary step: flip the next slot(s), in natural order, to VERSION'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "rollback" -d 'Undo the newest rollout (from history), or every slot to --to VERSION'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "switch" -d 'Blue/green: every slot to VERSION at once'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "dark" -d 'Dark canary: requests matching a header, cookie or network go to VERSION'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "weight" -d 'Give a routed VERSION a share of the traffic, in percent (0 removes it)'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "status" -d 'Slots, versions, endpoints, dark canary, weights, agents'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "agents" -d 'Live agents: applied revision, lag behind the latest change, errors'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "history" -d 'An app\'s audit log'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "canary" -d 'Automated canary: apply steps, observe traffic, continue or roll back'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "pause" -d 'Pause a running canary: its step timer stops until `resume`'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "resume" -d 'Resume a paused canary (also: confirm the final step of a --confirm canary)'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "abort" -d 'Abort a canary: it rolls back; returns once it has'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "check" -d 'Nagios/Sensu check: agents, routes, error rates. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "dashboard" -d 'A live web page: apps, slots, endpoints, agents, traffic, canaries, history'
complete -c discoctl -n "__fish_discoctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -f -a "add" -d 'Register ADDR as the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -f -a "rm" -d 'Remove the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and not __fish_seen_subcommand_from add rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l health -d 'HTTP path the proxies health-check (default: a TCP check)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l weight -d 'Relative weight among the endpoints of one version, 1-256' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register ADDR as the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand endpoint; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -f -a "set" -d 'Route slot INSTANCE of APP to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and not __fish_seen_subcommand_from set help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from help" -f -a "set" -d 'Route slot INSTANCE of APP to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand route; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -f -a "set" -d 'Set where APP\'s frontend listens, and its mode'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and not __fish_seen_subcommand_from set help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l listen -d 'IP:port the proxies listen on for this app (IPv4, or [IPv6]:port)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l mode -d 'http (default) or tcp' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set where APP\'s frontend listens, and its mode'
complete -c discoctl -n "__fish_discoctl_using_subcommand app; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l count -d 'How many slots to flip' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l timeout -d 'Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l reason -d 'Why, for the audit log' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l all -d 'Flip every slot not yet on VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l wait -d 'Wait until every live LB agent has applied the change (the default)'
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l no-wait -d 'Return as soon as the change is committed'
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -l allow-vanished -d 'Succeed even if an LB agent\'s status disappears during the wait before it confirmed (it is still named). Without it that is exit code 3: a host cut from etcd keeps serving the old routes'
complete -c discoctl -n "__fish_discoctl_using_subcommand promote" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l to -d 'Put every slot on this version instead (each needs an endpoint of it not reported failing)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l timeout -d 'Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l reason -d 'Why, for the audit log' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l wait -d 'Wait until every live LB agent has applied the change (the default)'
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l no-wait -d 'Return as soon as the change is committed'
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -l allow-vanished -d 'Succeed even if an LB agent\'s status disappears during the wait before it confirmed (it is still named). Without it that is exit code 3: a host cut from etcd keeps serving the old routes'
complete -c discoctl -n "__fish_discoctl_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l timeout -d 'Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l reason -d 'Why, for the audit log' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l wait -d 'Wait until every live LB agent has applied the change (the default)'
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l no-wait -d 'Return as soon as the change is committed'
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -l allow-vanished -d 'Succeed even if an LB agent\'s status disappears during the wait before it confirmed (it is still named). Without it that is exit code 3: a host cut from etcd keeps serving the old routes'
complete -c discoctl -n "__fish_discoctl_using_subcommand switch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l header -d 'Requests with this header value (NAME=VALUE). Repeatable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l cookie -d 'Requests with this cookie value (NAME=VALUE). Repeatable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l cidr -d 'Requests from this source network (10.0.0.0/8, 2001:db8::/32, or one address). Repeatable; the only kind a tcp app can match' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l timeout -d 'Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l reason -d 'Why, for the audit log' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l off -d 'Turn the dark canary off'
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l wait -d 'Wait until every live LB agent has applied the change (the default)'
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l no-wait -d 'Return as soon as the change is committed'
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -l allow-vanished -d 'Succeed even if an LB agent\'s status disappears during the wait before it confirmed (it is still named). Without it that is exit code 3: a host cut from etcd keeps serving the old routes'
complete -c discoctl -n "__fish_discoctl_using_subcommand dark" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l timeout -d 'Longest wait for the agents, e.g. 30s or 500ms; exit code 3 when it passes' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l reason -d 'Why, for the audit log' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l wait -d 'Wait until every live LB agent has applied the change (the default)'
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l no-wait -d 'Return as soon as the change is committed'
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -l allow-vanished -d 'Succeed even if an LB agent\'s status disappears during the wait before it confirmed (it is still named). Without it that is exit code 3: a host cut from etcd keeps serving the old routes'
complete -c discoctl -n "__fish_discoctl_using_subcommand weight" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand agents" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l limit -d 'Only the newest N records' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l steps -d 'Steps, comma separated: slot counts (1,2: that many slots on VERSION in total), shares of the traffic (5%,25%: through the policy\'s weights) and a final `all`' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l interval -d 'How long each step is observed (paused time does not count)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l max-error-rate -d 'Largest 5xx share (0-1) of VERSION over a step. Above it a step fails only if VERSION\'s share is above the stable versions\' by more than chance (Fisher\'s exact test; without stable traffic, a binomial test against the threshold)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l max-latency -d 'Largest mean response time of VERSION over a step, in ms (250) or as a duration (250ms); over it, compared with the stable versions like --max-p95. Default: unchecked' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l max-p95 -d 'Largest 95th percentile of VERSION\'s response time over a step (ms or a duration). Over it a step fails only if VERSION is slower than the stable versions by more than chance (Mann-Whitney U on the latency histograms). Needs per-request times: HAProxy\'s log_socket or nginx\'s access_log. Default: unchecked' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l max-p99 -d 'Largest 99th percentile, like --max-p95' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l min-requests -d 'Fewest requests VERSION must answer in a step for a verdict; the stable versions need as many to be compared with' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l confidence -d 'How sure the verdict at the end of a step must be before it fails: a test\'s p-value below 1 - CONFIDENCE. During a step a failure needs p < 0.001, so that a plainly broken VERSION is rolled back within its first requests' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l on-inconclusive -d 'A step over a threshold but not significantly (inconclusive) at the end of its interval: extend (observe one more interval, then pause if still inconclusive) or pause (for an operator: `discoctl resume` observes one more interval, `discoctl abort` rolls back)' -r -f -a "extend\t'Observe one more interval; still inconclusive then: pause'
pause\t'Pause at once for an operator (`discoctl resume` observes one more interval)'"
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l on-no-data -d 'A step with fewer requests: fail (roll back), wait (observe up to one more interval, then fail) or pass' -r -f -a "fail\t'Roll back'
wait\t'Observe up to one more interval, then roll back if there is still too little'
pass\t'Count the step as passed'"
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l header -d 'Dark-first match: a request header NAME=VALUE. Repeatable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l cookie -d 'Dark-first match: a cookie NAME=VALUE. Repeatable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l cidr -d 'Dark-first match: a source network. Repeatable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l gate -d 'Ask URL (HTTP POST of the step and the traffic statistics, JSON) before each step; anything but a 2xx answer (after retries on timeouts) pauses the canary until `discoctl resume APP`, which asks again. Repeatable. Not recorded: give it again with --resume' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l notify -d 'POST every event (the -o json line; observations left out) to URL, in order, with a 5 s timeout and 3 attempts, from the background: a slow receiver never delays a step or a rollback. Repeatable. Not recorded: give it again with --resume' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l timeout -d 'Longest wait for the LB agents to apply each step; past it the canary is rolled back and the exit code is 3' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l lock-ttl -d 'Lease of this process\'s lock on the canary: how soon another discoctl can take over (--resume) after this one dies' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l dark-first -d 'A first step with only the dark canary (--header, --cookie, --cidr): internal traffic to VERSION, observed like the others. It stays on until the last step'
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l dry-run-analysis -d 'Judge and report every step (`step_would_fail` when a step would have been rolled back, and after how long) but never roll back on a verdict: for tuning the thresholds on real traffic. Aborts, interrupts and agents that do not apply a step still roll back'
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l confirm -d 'Pause before the final step until `discoctl resume APP`'
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -l resume -d 'Take over the canary of APP whose discoctl died (its lock expired): re-apply the step it was in and observe it again, with the recorded settings'
complete -c discoctl -n "__fish_discoctl_using_subcommand canary" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l reason -d 'Why, shown by the running canary and `discoctl status`' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l reason -d 'Why, for the rollback\'s audit record' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l timeout -d 'Longest wait for the canary to roll back (exit 3 past it)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l lock-ttl -d 'Lease of the lock when this command rolls back a canary nobody runs' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand abort" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l stale-after -d 'CRITICAL when an LB agent\'s newest sign of life (status or statistics) is older than this, where it should have written since' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l lag-grace -d 'How long an LB agent behind the latest routing change gets to catch up before it counts as lagging (WARNING)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l max-error-rate -d 'WARNING when a version\'s 5xx share (0-1) over the agents\' last statistics window is above this' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l min-requests -d 'Versions with fewer requests in the last window are not judged' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l min-agents -d 'CRITICAL with fewer live LB agents (0: none needed)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l listen -d 'Address to serve the page on. Any other than a loopback address makes the page reachable from the network (a warning says so)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l token-file -d 'Read the token from this file (its first line, at least 16 characters) instead of making one up and printing it' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l name -d 'This dashboard\'s name in the audit log: actions are recorded as `dashboard:<NAME>`. Default: the host name' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l allow-host -d 'A host name the page may be opened by, besides IP addresses and localhost (a DNS name of this host, or of a reverse proxy in front); repeatable. Requests for any other host are refused, against DNS rebinding' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l endpoints -d 'etcd client URLs, comma separated' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l prefix -d 'Key prefix of the disco key space' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l user -d 'etcd user (auth)' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l password -d 'etcd password (auth); prefer the environment variable' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l cacert -d 'CA certificate (PEM) for etcd TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l cert -d 'Client certificate (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l key -d 'Client key (PEM) for etcd mutual TLS' -r -F
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l request-timeout -d 'Bound on each etcd request' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for humans'
json\t'One JSON document, for scripts'"
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l actor -d 'Who makes the change, for the audit log. Default: user@host' -r
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -l allow-actions -d 'Offer pause, resume, abort, promote and rollback on the page, each behind a token (printed at start, or --token-file). Without it the dashboard is read-only'
complete -c discoctl -n "__fish_discoctl_using_subcommand dashboard" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "endpoint" -d 'Register or remove endpoints by hand'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "route" -d 'Point slots at versions'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "app" -d 'An app\'s frontend settings'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "promote" -d 'Canary step: flip the next slot(s), in natural order, to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "rollback" -d 'Undo the newest rollout (from history), or every slot to --to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "switch" -d 'Blue/green: every slot to VERSION at once'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "dark" -d 'Dark canary: requests matching a header, cookie or network go to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "weight" -d 'Give a routed VERSION a share of the traffic, in percent (0 removes it)'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "status" -d 'Slots, versions, endpoints, dark canary, weights, agents'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "agents" -d 'Live agents: applied revision, lag behind the latest change, errors'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "history" -d 'An app\'s audit log'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "canary" -d 'Automated canary: apply steps, observe traffic, continue or roll back'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "pause" -d 'Pause a running canary: its step timer stops until `resume`'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "resume" -d 'Resume a paused canary (also: confirm the final step of a --confirm canary)'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "abort" -d 'Abort a canary: it rolls back; returns once it has'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "check" -d 'Nagios/Sensu check: agents, routes, error rates. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "dashboard" -d 'A live web page: apps, slots, endpoints, agents, traffic, canaries, history'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and not __fish_seen_subcommand_from endpoint route app promote rollback switch dark weight status agents history canary pause resume abort check dashboard help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and __fish_seen_subcommand_from endpoint" -f -a "add" -d 'Register ADDR as the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and __fish_seen_subcommand_from endpoint" -f -a "rm" -d 'Remove the endpoint of VERSION in slot INSTANCE of APP'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and __fish_seen_subcommand_from route" -f -a "set" -d 'Route slot INSTANCE of APP to VERSION'
complete -c discoctl -n "__fish_discoctl_using_subcommand help; and __fish_seen_subcommand_from app" -f -a "set" -d 'Set where APP\'s frontend listens, and its mode'
