#!/usr/bin/env bash
# Installs, on Debian 12, what disco's build, tests, demo and benchmarks use, and checks
# that it is there. Each need is detected by the very thing that is used (a program, or
# a file such as a .proto that the build reads), never by a neighbour of it: a package
# that is only *recommended* by another is not there after `--no-install-recommends`.
#
#   scripts/deps.sh           install what is missing (apt, --no-install-recommends)
#   scripts/deps.sh --check   install nothing: list what is missing, one line each;
#                             exit 1 if anything is, 0 otherwise
set -euo pipefail

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# One line per need: <kind> <what is used> <Debian package> <who uses it>
#   kind "cmd": a program looked up on PATH and in the sbin directories;
#   kind "file": a path that must exist.
needs=(
  "cmd  cc                                              build-essential   the build: crates with C code"
  "cmd  protoc                                          protobuf-compiler the build: etcd-client's protobuf code"
  "file /usr/include/google/protobuf/descriptor.proto   libprotobuf-dev   the build: protoc's well-known types"
  "cmd  etcd                                            etcd-server       tests, demo, benchmarks"
  "cmd  etcdctl                                         etcd-client       tests: etcd auth set-up"
  "cmd  haproxy                                         haproxy           tests, demo, benchmarks"
  "cmd  nginx                                           nginx             tests, demo, benchmarks"
  "file /usr/lib/nginx/modules/ngx_http_lua_module.so    libnginx-mod-http-lua tests, demo, benchmarks: the nginx balancer (balancer_socket)"
  "file /usr/lib/nginx/modules/ndk_http_module.so        libnginx-mod-http-ndk tests, demo, benchmarks: the lua module's dependency"
  "file /usr/share/lua/5.1/resty/core.lua                lua-resty-core    tests, demo, benchmarks: the lua module's core library"
  "cmd  wrk                                             wrk               benchmarks: runtime-story's plain wrk -t2 -c50"
  "cmd  openssl                                         openssl           tests: etcd TLS certificates"
  "cmd  docker-compose                                  docker-compose    tests: docker-compose.yml is validated, no engine needed"
  "cmd  chromium                                        chromium          tests: the dashboard's browser test"
  "cmd  chromedriver                                    chromium-driver   tests: the dashboard's browser test"
  "cmd  cargo                                           -                 the build: the Rust toolchain"
)

has_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local d
  for d in /usr/sbin /sbin /usr/local/sbin; do
    [ -x "$d/$1" ] && return 0
  done
  return 1
}

# Prints "<package>\t<line for the user>" for each missing need.
missing() {
  local line kind what pkg why
  for line in "${needs[@]}"; do
    read -r kind what pkg why <<<"$line"
    case "$kind" in
      cmd) has_cmd "$what" && continue ;;
      file) [ -e "$what" ] && continue ;;
    esac
    if [ "$pkg" = "-" ]; then
      printf -- '-\tmissing: %s (used by %s): install the Rust toolchain with rustup\n' "$what" "$why"
    else
      printf '%s\tmissing: %s (%s): apt-get install --no-install-recommends %s\n' \
        "$pkg" "$what" "$why" "$pkg"
    fi
  done
}

report() {
  local gaps
  gaps="$(missing)"
  if [ -n "$gaps" ]; then
    printf '%s\n' "$gaps" | cut -f2- >&2
    return 1
  fi
  return 0
}

if [ "$check_only" -eq 1 ]; then
  report
  exit $?
fi

mapfile -t pkgs < <(missing | cut -f1 | grep -vx -- '-' | sort -u)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing: ${pkgs[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Where an init system starts the packages' own services (nginx on :80, etcd on :2379),
  # they are not in disco's way: disco starts its own on free ports.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
