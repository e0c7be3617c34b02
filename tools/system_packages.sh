#!/usr/bin/env bash
# The Debian/Ubuntu packages `make example`, `make test` and .ci/run need, in one list: check
# them and, when some are missing, install them with apt-get (as root, or through `sudo -n`
# when it works without a password), saying so; otherwise print the exact command and fail.
#
#   tools/system_packages.sh [--check] example|test
#
#   example   WeasyPrint's libraries (Pango, HarfBuzz's subsetting library)
#   test      those, plus what the test tiers use: pdftotext/pdftoppm, Chromium, DejaVu fonts,
#             memcached, iproute2 (the multi-host tier's network namespaces), Varnish (the
#             shared cache in front of the real-services tier's site)
#   --check   never install: report, print the command, exit 1 when something is missing
#
# Exit status: 0 when everything is (now) there, 1 otherwise. Only bash built-ins and the
# programs probed (id, sudo, apt-get, ldconfig, dpkg-query) are used, so a test can fake them.
set -uo pipefail

# package            how to tell it is there (lib: a shared library ldconfig knows,
#                    cmd: a program on PATH, deb: dpkg says it is installed)
EXAMPLE_PACKAGES=(
    "libpango-1.0-0      lib:libpango-1.0.so.0"
    "libpangoft2-1.0-0   lib:libpangoft2-1.0.so.0"
    "libharfbuzz-subset0 lib:libharfbuzz-subset.so.0"
)
TEST_PACKAGES=(
    "${EXAMPLE_PACKAGES[@]}"
    "poppler-utils       cmd:pdftoppm"
    "chromium            cmd:chromium"
    "fonts-dejavu-core   deb:fonts-dejavu-core"
    "memcached           cmd:memcached"
    "iproute2            cmd:ip"
    "varnish             cmd:varnishd"
)

say() { echo "system packages: $*" >&2; }

mode=install
case "${1:-}" in
--check) mode=check; shift ;;
--install) shift ;;
esac
case "${1:-}" in
example) wanted=("${EXAMPLE_PACKAGES[@]}"); purpose="WeasyPrint (make example)" ;;
test) wanted=("${TEST_PACKAGES[@]}"); purpose="WeasyPrint and the tests (make test)" ;;
*) echo "usage: $0 [--check] example|test" >&2; exit 2 ;;
esac

ldconfig_cache=""
load_ldconfig_cache() {
    local ldconfig
    ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
    ldconfig_cache=$("$ldconfig" -p 2>/dev/null) || ldconfig_cache=""
}

# present PROBE: whether the thing PROBE names is on this machine.
present() {
    local kind=${1%%:*} name=${1#*:} python
    case $kind in
    lib)
        [[ $ldconfig_cache == *"$name"* ]] && return 0
        # Not in ldconfig's cache (a library path of its own): ask the dynamic loader.
        python=${PYTHON:-python3}
        command -v "$python" >/dev/null 2>&1 &&
            "$python" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$name" 2>/dev/null
        ;;
    cmd) command -v "$name" >/dev/null 2>&1 ;;
    deb) [[ $(dpkg-query -W -f='${Status}' "$name" 2>/dev/null) == "install ok installed" ]] ;;
    *) return 1 ;;
    esac
}

# Sets `missing` to the packages whose probe fails.
find_missing() {
    local entry package probe
    missing=()
    load_ldconfig_cache
    for entry in "${wanted[@]}"; do
        read -r package probe <<<"$entry"
        present "$probe" || missing+=("$package")
    done
}

find_missing
if ((${#missing[@]} == 0)); then
    say "everything $purpose needs is installed"
    exit 0
fi

uid=$(id -u 2>/dev/null || echo unknown)
if [[ $uid == 0 ]]; then prefix=""; else prefix="sudo "; fi
command_line="${prefix}apt-get install -y ${missing[*]}"
say "$purpose needs Debian packages that are missing: ${missing[*]}"

give_up() {  # reason
    say "$1; install them with:"
    echo "    $command_line" >&2
    exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
    say "this machine has no apt-get: install the equivalents of these Debian packages with"
    say "its package manager, then run make again"
    exit 1
fi
[[ $mode == check ]] && give_up "not installing them (--check)"
if [[ $uid == 0 ]]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run_as_root=(sudo -n)
else
    give_up "not root, and sudo needs a password (or is missing)"
fi

# A fresh machine's unattended-upgrades often holds dpkg's lock for minutes after boot: wait for
# it (up to 5 min) rather than fail at once with "Could not get lock".
apt() {
    "${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 "$@"
}

say "installing them: ${run_as_root[*]:+${run_as_root[*]} }apt-get install -y ${missing[*]}"
if ! apt install -y "${missing[@]}"; then
    say "apt-get install failed; updating the package lists (apt-get update) and trying again"
    apt update && apt install -y "${missing[@]}" || give_up "apt-get could not install them"
fi

find_missing
if ((${#missing[@]} > 0)); then
    command_line="${prefix}apt-get install -y ${missing[*]}"
    give_up "still missing after apt-get: ${missing[*]}"
fi
say "installed; everything $purpose needs is there now"
