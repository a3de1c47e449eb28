# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_disco_agent_global_optspecs
    string join \n c/config= agent-id= endpoints= prefix= log-format= h/help V/version
end

function __fish_disco_agent_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_disco_agent_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_disco_agent_using_subcommand
    set -l cmd (__fish_disco_agent_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c disco-agent -n "__fish_disco_agent_needs_command" -s c -l config -d 'The configuration file (TOML)' -r -F
complete -c disco-agent -n "__fish_disco_agent_needs_command" -l agent-id -d 'Overrides `agent_id`' -r
complete -c disco-agent -n "__fish_disco_agent_needs_command" -l endpoints -d 'Overrides `etcd.endpoints` (comma separated)' -r
complete -c disco-agent -n "__fish_disco_agent_needs_command" -l prefix -d 'Overrides `prefix`' -r
complete -c disco-agent -n "__fish_disco_agent_needs_command" -l log-format -d 'Log format (level from RUST_LOG, default info)' -r -f -a "text\t''
json\t''"
complete -c disco-agent -n "__fish_disco_agent_needs_command" -s h -l help -d 'Print help'
complete -c disco-agent -n "__fish_disco_agent_needs_command" -s V -l version -d 'Print version'
complete -c disco-agent -n "__fish_disco_agent_needs_command" -f -a "register" -d 'Register one instance (no config file needed): publish it under a lease, health-check it, and on SIGTERM withdraw it and wait for the LB agents'
complete -c disco-agent -n "__fish_disco_agent_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l app -d 'The app' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l instance -d 'The instance slot' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l version -d 'The version this instance runs' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l address -d 'host:port the proxies connect to' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l health -d 'Health check path (/healthz) or http:// URL' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l interval -d 'Time between checks' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l timeout -d 'Bound on one check. Default: 1s, or the interval when that is shorter' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l rise -d 'Consecutive passes before publishing' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l fall -d 'Consecutive failures before marking failing' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l lease-ttl -d 'Lease TTL' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l weight -d 'Weight among the version\'s endpoints, 1-256' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -l drain-timeout -d 'Bound on waiting for the LB agents when draining' -r
complete -c disco-agent -n "__fish_disco_agent_using_subcommand register" -s h -l help -d 'Print help'
complete -c disco-agent -n "__fish_disco_agent_using_subcommand help; and not __fish_seen_subcommand_from register help" -f -a "register" -d 'Register one instance (no config file needed): publish it under a lease, health-check it, and on SIGTERM withdraw it and wait for the LB agents'
complete -c disco-agent -n "__fish_disco_agent_using_subcommand help; and not __fish_seen_subcommand_from register help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
