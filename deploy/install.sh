#!/usr/bin/env bash
# Install, upgrade, roll back or uninstall ZoneWatch on Debian 12 or Raspberry Pi OS (x86_64, aarch64): the
# probe's agent or the central collector, each version in a virtual environment of its own, run by systemd.
#
#   sudo deploy/install.sh agent                      install the agent from this checkout (again: upgrade)
#   sudo deploy/install.sh collector --from zonewatch-0.2.0-py3-none-any.whl
#   sudo deploy/install.sh agent --rollback            back to the release that was current before
#   sudo deploy/install.sh agent --uninstall [--purge]
#
# What goes where (every path under --root DIR when it is given):
#   PREFIX/ROLE/releases/VERSION/   a virtual environment per version (PREFIX is /opt/zonewatch by default)
#   PREFIX/ROLE/current, previous   links to the release that runs and to the one before it; switched by rename
#   /etc/systemd/system/zonewatch-ROLE.service   the unit beside this script, ExecStart in PREFIX/ROLE/current
#   /usr/local/bin/zonewatch-ROLE   a link to the current release's program
#   /etc/zonewatch/                 configuration, root:zonewatch 0750: ROLE.yaml (0640) is written from the
#                                   example only when there is none; secrets/ root:zonewatch 0750
#   /var/lib/zonewatch/             state (the agent's spool, the collector's queues), zonewatch:zonewatch 0750
# and for the agent, its updater (releases the centre asks for: agent.fleet.updater, run as root):
#   /etc/systemd/system/zonewatch-agent-update.{path,service}   the path unit watches update/request.json
#   /var/lib/zonewatch/update/      where the agent asks and the updater answers, zonewatch:zonewatch 0750
#   PREFIX/agent/deploy/            this script and the units, for the updater (the prefix given here is its default)
# Run with --help for every option.
set -euo pipefail
umask 022   # the service's user must be able to read the programs, whatever root's own umask is

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")

usage() {
    cat <<'EOF'
usage: install.sh agent|collector [options]

Installs (or upgrades to) the given source, keeping the release that was current to roll back to. Each
version gets a virtual environment of its own; the new one becomes current only once it is complete and its
program starts, and the service is then restarted on it (if it fails to start, the previous release is put
back). An existing configuration is never touched; the example is written only where there is none, and the
service is not started on it.

  --from SRC       what to install: a wheel file, a source folder (default: the checkout holding this
                   script), or a package index URL (http://, https://, file://) to take zonewatch from
  --version V      with an index URL: this version (default: the newest); with a wheel or a folder: refuse
                   anything else
  --wheels DIR     offline: take every dependency from this folder of wheels only (no index)
  --prefix DIR     where the releases go (default /opt/zonewatch)
  --python PY      the Python to make virtual environments with (default python3; 3.11 or newer)
  --keep N         releases to keep, the current and the previous included (default 3)
  --root DIR       install beneath DIR as if it were / (a scratch root or an image being built): no user is
                   made, nothing is chowned, systemd is not told; the unit and links name the paths as the
                   system will see them. The virtual environments work only where they were made.
  --rollback       make the previous release current again (again: back to the one before), restart
  --uninstall      stop and remove the service, its unit, links and every release; configuration and
                   state (the agent's spool) stay
  --purge          with --uninstall: also remove /etc/zonewatch, /var/lib/zonewatch and the user zonewatch
                   (refused while the other role is installed on this machine: they share them)
  -h, --help       this text
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

role="" action=install from="" want_version="" wheels="" prefix=/opt/zonewatch python=python3 keep=3 root=""
purge=0
value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
    case "$1" in
        agent|collector) [ -z "$role" ] || die "one role at a time: $role or $1"; role=$1 ;;
        --from) value "$@"; from=$2; shift ;;
        --version) value "$@"; want_version=$2; shift ;;
        --wheels) value "$@"; wheels=$2; shift ;;
        --prefix) value "$@"; prefix=${2%/}; shift ;;
        --python) value "$@"; python=$2; shift ;;
        --keep) value "$@"; keep=$2; shift ;;
        --root) value "$@"; root=$2; shift ;;
        --rollback) action=rollback ;;
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ -n "$role" ] || die "say which to install: agent (a probe) or collector (the centre); see --help"
[[ $prefix =~ ^/[A-Za-z0-9._/-]+$ ]] || die "--prefix must be an absolute path of letters, digits, . _ - /: '$prefix'"
[[ $keep =~ ^[0-9]+$ ]] && [ "$keep" -ge 2 ] || die "--keep must be 2 or more (the current and the previous release)"
[ "$purge" = 0 ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall"
if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [ "$root" != / ] || root=""
fi
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run it as root (sudo), or give --root DIR to install beneath a folder"

R=$root                                   # "" on a real system
live=$([ -z "$R" ] && echo 1 || echo 0)   # a real system: a user, ownership, systemd
user=zonewatch
etc=/etc/zonewatch
state=/var/lib/zonewatch
home=$prefix/$role                        # as the system sees it; on disk: $R$home
unit=zonewatch-$role.service
unit_path=$R/etc/systemd/system/$unit
bin_link=$R/usr/local/bin/zonewatch-$role
other=$([ "$role" = agent ] && echo collector || echo agent)
# The extras: a probe runs the agent only; the centre also writes the monthly report from its store (matplotlib).
extras=$([ "$role" = agent ] && echo agent || echo collector,report)

systemd_up() { [ "$live" = 1 ] && [ -d /run/systemd/system ]; }
release_of() { local link; link=$(readlink "$R$home/$1" 2>/dev/null) || return 0; basename "$link"; }
complete() { [ -f "$R$home/releases/$1/.zonewatch-release" ]; }

mkdir -p "$R$prefix"
exec 9>"$R$home.lock"
flock -n 9 || die "another install.sh $role is running (it holds $R$home.lock)"
tmp=$(mktemp -d)
stage=""
finish() {
    local rc=$?
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ] && [ -n "$stage" ]; then
        echo "install.sh: $role: failed while $stage; current is unchanged ($(release_of current || true))" >&2
    fi
}
trap finish EXIT

# Point current at releases/$1 (and previous at what current was), each by an atomic rename of a new link.
switch_to() {
    local old new=$1
    old=$(release_of current)
    [ "$old" != "$new" ] || return 0
    ln -sfn "releases/$new" "$R$home/current.new"
    mv -Tf "$R$home/current.new" "$R$home/current"
    if [ -n "$old" ]; then
        ln -sfn "releases/$old" "$R$home/previous.new"
        mv -Tf "$R$home/previous.new" "$R$home/previous"
    fi
}

# Restart the service on the current release; if it does not come up and $1 (the release before) is given,
# switch back to it, restart that, and fail.
restart() {
    local back=${1:-}
    if ! systemd_up; then
        [ "$live" = 0 ] || say "systemd is not running here: start $unit yourself"
        return 0
    fi
    if systemctl restart "$unit"; then
        say "$unit is running zonewatch $(release_of current)"
        return 0
    fi
    [ -n "$back" ] || die "$unit did not start on zonewatch $(release_of current): journalctl -u $unit"
    switch_to "$back"
    systemctl restart "$unit" || true
    die "zonewatch $(release_of previous) did not start (journalctl -u $unit): switched back to $back"
}

if [ "$action" = rollback ]; then
    current=$(release_of current) previous=$(release_of previous)
    [ -n "$current" ] || die "$role is not installed in $home"
    [ -n "$previous" ] && complete "$previous" || die "no previous release to roll back to in $home/releases"
    switch_to "$previous"
    say "$role: current is now zonewatch $previous (was $current; --rollback again returns to it)"
    restart
    exit 0
fi

if [ "$action" = uninstall ]; then
    if [ "$purge" = 1 ] && [ -e "$R/etc/systemd/system/zonewatch-$other.service" ]; then
        die "the $other is installed here too and shares $etc and $state: uninstall it first, or leave out --purge"
    fi
    if systemd_up; then
        systemctl disable --now --quiet "$unit" 2>/dev/null || true
        [ "$role" != agent ] || systemctl disable --now --quiet zonewatch-agent-update.path 2>/dev/null || true
    fi
    if [ -d "$R$home" ] || [ -e "$unit_path" ]; then
        rm -f "$unit_path"
        [ "$role" != agent ] || rm -f "$R/etc/systemd/system/zonewatch-agent-update.path" \
            "$R/etc/systemd/system/zonewatch-agent-update.service"
        if systemd_up; then systemctl daemon-reload; fi
        if [ -L "$bin_link" ]; then rm -f "$bin_link"; fi
        rm -rf "$R$home"
        say "$role: removed $home, $unit and the link zonewatch-$role"
    else
        say "$role is not installed under $home"
    fi
    if [ "$purge" = 1 ]; then
        rm -rf "$R$etc" "$R$state"
        if [ "$live" = 1 ] && getent passwd "$user" >/dev/null; then
            userdel "$user"
        fi
        say "purged the configuration ($etc), the state ($state) and the user $user"
    else
        say "kept the configuration in $etc and the state in $state; --uninstall --purge removes them"
    fi
    rm -f "$R$home.lock"
    rmdir "$R$prefix" 2>/dev/null || true
    exit 0
fi

# ------------------------------------------------------------------------------------------------ install

template=$here/$unit
[ -f "$template" ] || die "the unit $template is missing: run the script from the project's files"
command -v "$python" >/dev/null || die "$python is not installed: apt-get install python3 python3-venv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is $("$python" -V 2>&1): ZoneWatch needs Python 3.11 or newer (Debian 12, Raspberry Pi OS 12)"
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    [ "$live" = 1 ] && command -v apt-get >/dev/null \
        || die "$python cannot make virtual environments: apt-get install python3-venv"
    say "installing python3-venv (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

pip_opts=(--disable-pip-version-check --no-input --quiet)
dep_opts=()
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || die "--wheels: no such folder: $wheels"
    dep_opts=(--no-index --find-links "$(cd "$wheels" && pwd)")
fi
tool_python=""
tools() {   # a pip to build or download the wheel with: the interpreter's own, else a throwaway environment's
    [ -z "$tool_python" ] || return 0
    if "$python" -m pip --version >/dev/null 2>&1; then
        tool_python=$python     # pip wheel and pip download change nothing in the interpreter's own packages
    else
        "$python" -m venv "$tmp/tools"
        tool_python=$tmp/tools/bin/python
    fi
}

stage="fetching zonewatch"
mkdir -p "$tmp/dist"
src=${from:-$checkout}
case "$src" in
    http://*|https://*|file://*)
        tools
        say "downloading zonewatch${want_version:+ $want_version} from $src"
        # From that index only: an extra index in pip's own settings must not offer a zonewatch of its own.
        env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
            "$tool_python" -m pip download "${pip_opts[@]}" --no-deps --only-binary=:all: --index-url "$src" \
            -d "$tmp/dist" "zonewatch${want_version:+==$want_version}"
        [ -n "$wheels" ] || dep_opts=(--extra-index-url "$src")
        ;;
    *.whl)
        [ -f "$src" ] || die "no such wheel: $src"
        cp "$src" "$tmp/dist/"
        ;;
    *)
        [ -f "$src/pyproject.toml" ] || die "$src is not a wheel, a source folder (no pyproject.toml) or an index URL"
        tools
        say "building the wheel from $src"
        "$tool_python" -m pip wheel "${pip_opts[@]}" "${dep_opts[@]}" --no-deps -w "$tmp/dist" "$src"
        ;;
esac
wheel=$(find "$tmp/dist" -name 'zonewatch-*.whl' | head -n 1)
[ -n "$wheel" ] || die "no zonewatch wheel came out of $src"
version=$(basename "$wheel")
version=${version#zonewatch-}
version=${version%%-*}
[[ $version =~ ^[A-Za-z0-9._+]+$ ]] || die "cannot read a version from $(basename "$wheel")"
[ -z "$want_version" ] || [ "$version" = "$want_version" ] || die "$src holds zonewatch $version, not $want_version"
# What the wheel holds, not its bytes: the hash of its RECORD (every file with its own hash) is the same for two
# builds of the same files, so running the installer again from an unchanged checkout changes nothing.
content=$("$python" -c 'import hashlib, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
(record,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
print(hashlib.sha256(wheel.read(record)).hexdigest())' "$wheel")

release=$R$home/releases/$version
before=$(release_of current)
modules=$([ "$role" = agent ] && echo "agent.runner, agent.cli" || echo "collector.app, collector.cli")
check_release() {   # every dependency imports on this machine, and the program runs
    "$1/bin/python" -c "import $modules" && "$1/bin/zonewatch-$role" --help >/dev/null
}
reinstalled=0
if complete "$version" && grep -qx "content_sha256=$content" "$release/.zonewatch-release"; then
    say "zonewatch $version ($role) is installed already in $home/releases/$version"
elif complete "$version" && [ "$before" = "$version" ]; then
    # The same version number built again: it cannot stand beside itself, so it is replaced where it runs.
    stage="reinstalling zonewatch $version in place"
    say "zonewatch $version is current but this is another build of it: reinstalling in place (give each build a"
    say "version of its own to keep the one before to roll back to)"
    "$release/bin/python" -m pip install "${pip_opts[@]}" "${dep_opts[@]}" --force-reinstall --no-deps "$wheel"
    check_release "$release"
    reinstalled=1
else
    stage="installing zonewatch $version into $home/releases/$version"
    say "installing zonewatch $version ($role) into $home/releases/$version"
    rm -rf "$release"
    mkdir -p "$R$home/releases"
    "$python" -m venv "$release"
    # Not quiet: on a Raspberry Pi this takes minutes, and pip's lines show it is getting on.
    "$release/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off "${dep_opts[@]}" \
        "${wheel}[$extras]"
    check_release "$release" || die "zonewatch $version does not run here (see above)"
fi
printf 'version=%s\nrole=%s\nwheel=%s\ncontent_sha256=%s\ninstalled=%s\n' "$version" "$role" "$(basename "$wheel")" \
    "$content" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$release/.zonewatch-release"

# The user, the folders and the configuration.
stage="preparing the user, $etc and $state"
if [ "$live" = 1 ]; then
    if ! getent passwd "$user" >/dev/null; then
        group_opt=(--user-group)
        getent group "$user" >/dev/null && group_opt=(--gid "$user")
        useradd --system "${group_opt[@]}" --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
        say "created the system user $user"
    fi
    if [ "$role" = agent ] && getent group dialout >/dev/null; then
        usermod -a -G dialout "$user"    # the modems' serial ports, for runs by hand (the unit adds it itself)
    fi
fi
owned() {   # owned USER:GROUP MODE PATH...: the mode always, the owner on a real system
    local who=$1 mode=$2
    shift 2
    chmod "$mode" "$@"
    [ "$live" = 0 ] || chown "$who" "$@"
}
mkdir -p "$R$etc/secrets" "$R$state"
owned "root:$user" 0750 "$R$etc" "$R$etc/secrets"
owned "$user:$user" 0750 "$R$state"
if [ "$role" = agent ]; then   # where the agent asks its updater for a release (agent.fleet.software)
    mkdir -p "$R$state/update"
    owned "$user:$user" 0750 "$R$state/update"
fi
fresh_config=0
put_config() {   # put_config NAME CONTENT-FILE: install /etc/zonewatch/NAME unless it exists
    [ ! -e "$R$etc/$1" ] || { say "keeping $etc/$1"; return 0; }
    install -m 0640 "$2" "$R$etc/$1.new"
    [ "$live" = 0 ] || chown "root:$user" "$R$etc/$1.new"
    mv -f "$R$etc/$1.new" "$R$etc/$1"
    say "wrote $etc/$1 from the example: edit it"
    fresh_config=1
}
example=$checkout/config/$role.example.yaml
if [ -e "$R$etc/$role.yaml" ]; then
    say "keeping $etc/$role.yaml"
elif [ ! -f "$example" ]; then
    say "no example configuration beside this script: write $etc/$role.yaml yourself"
    fresh_config=1
elif [ "$role" = agent ]; then
    put_config agent.yaml "$example"
else
    sed 's/^inventory: inventory\.example\.yaml/inventory: inventory.yaml/' "$example" >"$tmp/collector.yaml"
    put_config collector.yaml "$tmp/collector.yaml"
    inventory=$checkout/config/inventory.example.yaml
    [ ! -f "$inventory" ] || put_config inventory.yaml "$inventory"
fi

# The unit and the link, then the switch.
stage="writing $unit"
mkdir -p "$(dirname "$unit_path")" "$(dirname "$bin_link")"
sed "s|/opt/zonewatch/$role/current/|$home/current/|g" "$template" >"$tmp/$unit"
unit_changed=1
if cmp -s "$tmp/$unit" "$unit_path"; then unit_changed=0; fi
install -m 0644 "$tmp/$unit" "$unit_path.new"
mv -f "$unit_path.new" "$unit_path"
ln -sfn "$home/current/bin/zonewatch-$role" "$bin_link.new"
mv -Tf "$bin_link.new" "$bin_link"
if [ "$role" = agent ]; then
    # The updater (agent.fleet.updater): its units, and this script with the units beside the releases, where the
    # updater runs it (with this prefix as its default). The updater runs that copy, which does not copy itself.
    for extra in zonewatch-agent-update.service zonewatch-agent-update.path; do
        [ -f "$here/$extra" ] || die "the unit $here/$extra is missing: run the script from the project's files"
        sed "s|/opt/zonewatch/agent/|$home/|g" "$here/$extra" >"$tmp/$extra"
        install -m 0644 "$tmp/$extra" "$R/etc/systemd/system/$extra.new"
        mv -f "$R/etc/systemd/system/$extra.new" "$R/etc/systemd/system/$extra"
    done
    kit=$R$home/deploy
    mkdir -p "$kit"
    if [ "$(cd "$here" && pwd -P)" != "$(cd "$kit" && pwd -P)" ]; then
        for file in zonewatch-agent.service zonewatch-agent-update.service zonewatch-agent-update.path; do
            install -m 0644 "$here/$file" "$kit/$file"
        done
        sed "s| prefix=/opt/zonewatch | prefix=$prefix |" "$here/install.sh" >"$tmp/install.sh"
        grep -q " prefix=$prefix " "$tmp/install.sh" || die "cannot set the prefix in the updater's copy of install.sh"
        install -m 0755 "$tmp/install.sh" "$kit/install.sh.new"
        mv -f "$kit/install.sh.new" "$kit/install.sh"
    fi
fi

stage="switching to zonewatch $version"
switch_to "$version"
stage=""

# Old releases beyond --keep go, newest kept; the current and the previous always stay.
current=$(release_of current) previous=$(release_of previous)
kept=0
[ -z "$current" ] || kept=$((kept + 1))
[ -z "$previous" ] || kept=$((kept + 1))
while IFS= read -r marker; do
    old=$(basename "$(dirname "$marker")")
    [ "$old" != "$current" ] && [ "$old" != "$previous" ] || continue
    if [ "$kept" -lt "$keep" ]; then kept=$((kept + 1)); continue; fi
    rm -rf "$R$home/releases/$old"
    say "removed the old release $old"
done < <(ls -1t "$R$home"/releases/*/.zonewatch-release 2>/dev/null || true)
for dir in "$R$home"/releases/*/; do   # left by an install that failed half-way
    [ -d "$dir" ] && [ ! -f "$dir/.zonewatch-release" ] && rm -rf "$dir"
done

say "$role: current is zonewatch $version ($home/current)${previous:+; previous: $previous (--rollback returns to it)}"
if systemd_up; then
    systemctl daemon-reload
    systemctl enable --quiet "$unit"
    if [ "$role" = agent ]; then systemctl enable --now --quiet zonewatch-agent-update.path; fi
fi
if [ "$fresh_config" = 1 ]; then
    say "next: edit $etc/$role.yaml, check it with"
    say "  sudo -u $user zonewatch-$role -c $etc/$role.yaml check-config"
    say "then start the service: systemctl start $unit"
elif [ "$before" != "$version" ] || [ "$unit_changed" = 1 ] || [ "$reinstalled" = 1 ]; then
    back=""
    [ -z "$before" ] || [ "$before" = "$version" ] || back=$before
    restart "$back"
else
    say "nothing changed"
fi
