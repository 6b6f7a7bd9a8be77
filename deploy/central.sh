#!/usr/bin/env bash
# Install and configure ZoneWatch's central side on Debian 12: mosquitto (TLS, the rendered password file and
# ACL, queue limits), VictoriaMetrics (with the dedup flag the collector needs), Alertmanager (its configuration
# rendered from the inventory; clustered in an HA pair), vmauth beside VictoriaMetrics (each carrier reads only its
# own series), the collector (through deploy/install.sh collector) and Grafana's provisioning files (Main Org for the
# authority and the NOC, an organisation per carrier through vmauth). Run it again after an inventory change: it
# renders everything again, keeps every password, certificate and the collector's configuration, and reloads what
# changed.
#
#   sudo deploy/central.sh                                 one machine: everything here
#   sudo deploy/central.sh --name collector-a --role primary --peer central-b --peer-name collector-b
#   sudo deploy/central.sh --name collector-b --role secondary --peer central-a --broker central-a \
#        --vm http://central-a:8428 --tls-ca ca.crt --password-file collector-b      the second of an HA pair
#
# What goes where (every path under --root DIR when it is given):
#   /etc/zonewatch/collector.yaml, collector.env, inventory.yaml, pki/ca.crt   the collector (install.sh's layout)
#   /etc/mosquitto/zonewatch/        passwd, acl, secrets/ (one password per user), rendered by render-mosquitto
#   /etc/mosquitto/conf.d/zonewatch.conf, certs/zonewatch.{crt,key}, ca_certificates/zonewatch-ca.crt
#   /etc/default/victoria-metrics, /etc/default/prometheus-alertmanager   the services' arguments
#   /etc/prometheus/alertmanager.yml, zonewatch-secrets/   rendered by render-alertmanager
#   /etc/zonewatch-vmauth/           auth.yml, vmauth.env, secrets/ (one password per user), rendered by render-vmauth
#   /etc/systemd/system/zonewatch-vmauth.service   vmauth as the user zonewatch-vmauth (deploy/zonewatch-vmauth.service)
#   /opt/zonewatch/dashboards/, /etc/grafana/provisioning/{datasources,dashboards}/zonewatch{,-carriers}.yaml
#   /etc/zonewatch/grafana/          render-grafana's files: provisioning/, grafana.env (the carriers' passwords),
#                                    orgs.txt; /etc/systemd/system/grafana-server.service.d/zonewatch.conf reads the env
#   /etc/systemd/system/zonewatch-collector.service.d/central.conf   starts the collector after its services
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$here")

usage() {
    cat <<'EOF'
usage: central.sh [options]

Installs the central side on this Debian 12 machine (or beneath --root DIR) and configures it from the zone
inventory. Safe to run again: passwords, certificates and an existing collector.yaml are kept; what is rendered
from the inventory (broker users and ACL, Alertmanager routes) is rendered again and the services reloaded.

  --inventory FILE   the zone inventory, copied to /etc/zonewatch/inventory.yaml (default: keep the one there,
                     else the example)
  --name USER        this collector's broker username and client id (default: collector)
  --role R           one of an HA pair: primary or secondary (README: High availability)
  --peer HOST        the other host of the HA pair: its Alertmanager joins this one's cluster (HOST:9094) and
                     this collector sends every alert to it too (http://HOST:9093)
  --peer-name USER   the other collector's broker username (rendered here when the broker is here)
  --advertise ADDR   the address the other host reaches this Alertmanager's cluster port on (default: the
                     first address of `hostname -I`)
  --broker HOST      the broker is on HOST (port 8883), not here: no mosquitto here; needs --tls-ca and
                     --password-file (the broker host's /etc/mosquitto/zonewatch/secrets/<name>)
  --vm URL           VictoriaMetrics is at URL, not here (default: installed here, http://127.0.0.1:8428)
  --vm-listen ADDR   where a local VictoriaMetrics listens (default 127.0.0.1:8428; Grafana elsewhere needs more)
  --retention T      VictoriaMetrics' retention (default 2y)
  --vmauth-listen ADDR   where vmauth listens, beside a local VictoriaMetrics (default 127.0.0.1:8427)
  --vmauth-url URL   vmauth's URL as Grafana's server reaches it (default: http:// and --vmauth-listen)
  --no-vmauth        no vmauth and no carrier organisations in Grafana (there is none either with --vm)
  --bridge ZONE      a zone whose park broker bridges to this broker (again for each; see render-bridge)
  --zones Z1,Z2      this collector owns only these zones (sharding), written into a new collector.yaml
  --tls-cert F --tls-key F --tls-ca F   the broker's certificate, its key and the CA that signed it (default: a
                     private CA made here once, in /etc/zonewatch/pki, and a server certificate from it)
  --tls-name NAME    another name or IP address the broker's certificate must hold (again for each)
  --password-file F  with --broker: this collector's broker password
  --from, --wheels, --version, --python, --prefix   passed to deploy/install.sh collector
  --root DIR         install beneath DIR as if it were / (no packages, users or services: see install.sh)
  -h, --help         this text
EOF
}

die() { echo "central.sh: $*" >&2; exit 1; }
say() { echo "central.sh: $*"; }

root="" inventory="" name=collector role="" peer="" peer_name="" advertise="" broker="" vm_url="" vm_listen=127.0.0.1:8428
retention=2y zones="" tls_cert="" tls_key="" tls_ca="" password_file="" prefix=/opt/zonewatch
vmauth_listen=127.0.0.1:8427 vmauth_url="" with_vmauth=1
bridges=() tls_names=() pass=()
value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --inventory) value "$@"; inventory=$2; shift ;;
        --name) value "$@"; name=$2; shift ;;
        --role) value "$@"; role=$2; shift ;;
        --peer) value "$@"; peer=$2; shift ;;
        --peer-name) value "$@"; peer_name=$2; shift ;;
        --advertise) value "$@"; advertise=$2; shift ;;
        --broker) value "$@"; broker=$2; shift ;;
        --vm) value "$@"; vm_url=${2%/}; shift ;;
        --vm-listen) value "$@"; vm_listen=$2; shift ;;
        --retention) value "$@"; retention=$2; shift ;;
        --vmauth-listen) value "$@"; vmauth_listen=$2; shift ;;
        --vmauth-url) value "$@"; vmauth_url=${2%/}; shift ;;
        --no-vmauth) with_vmauth=0 ;;
        --bridge) value "$@"; bridges+=("$2"); shift ;;
        --zones) value "$@"; zones=$2; shift ;;
        --tls-cert) value "$@"; tls_cert=$2; shift ;;
        --tls-key) value "$@"; tls_key=$2; shift ;;
        --tls-ca) value "$@"; tls_ca=$2; shift ;;
        --tls-name) value "$@"; tls_names+=("$2"); shift ;;
        --password-file) value "$@"; password_file=$2; shift ;;
        --from|--wheels|--version|--python) value "$@"; pass+=("$1" "$2"); shift ;;
        --prefix) value "$@"; prefix=${2%/}; pass+=("$1" "$prefix"); shift ;;
        --root) value "$@"; root=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
id_re='^[a-z0-9][a-z0-9_.-]{0,62}$'
[[ $name =~ $id_re ]] || die "--name must be an id (lowercase letters, digits, - _ .): '$name'"
[ -z "$peer_name" ] || [[ $peer_name =~ $id_re ]] || die "--peer-name must be an id: '$peer_name'"
case "$role" in ""|primary|secondary) ;; *) die "--role is primary or secondary, not '$role'" ;; esac
[ -z "$peer" ] || [ -n "$role" ] || die "--peer makes an HA pair: give --role primary or secondary"
if [ -n "$broker" ]; then
    [ -n "$tls_ca" ] && [ -n "$password_file" ] || die "--broker needs --tls-ca and --password-file from the broker host"
    [ ${#bridges[@]} -eq 0 ] && [ -z "$peer_name" ] || die "--bridge and --peer-name are rendered on the broker's host"
fi
[ -z "$tls_cert$tls_key" ] || { [ -n "$tls_cert" ] && [ -n "$tls_key" ] && [ -n "$tls_ca" ]; } \
    || die "--tls-cert and --tls-key go together, with --tls-ca"
addr_re='^[^[:space:]/]*:[0-9]+$'
[[ $vm_listen =~ $addr_re ]] || die "--vm-listen is HOST:PORT, not '$vm_listen'"
[[ $vmauth_listen =~ $addr_re ]] || die "--vmauth-listen is HOST:PORT, not '$vmauth_listen'"
local_url() {   # local_url HOST:PORT: the URL a client on this host uses for a service listening there
    local host=${1%:*}
    case "$host" in ""|0.0.0.0|"[::]") host=127.0.0.1 ;; esac
    echo "http://$host:${1##*:}"
}
vm_local=$(local_url "$vm_listen")
# vmauth goes beside VictoriaMetrics: with --vm it is on that host, installed there.
[ -z "$vm_url" ] || with_vmauth=0
vmauth_url=${vmauth_url:-$(local_url "$vmauth_listen")}
if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [ "$root" != / ] || root=""
fi
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run it as root (sudo), or give --root DIR to write beneath a folder"
R=$root
live=$([ -z "$R" ] && echo 1 || echo 0)
systemd_up() { [ "$live" = 1 ] && [ -d /run/systemd/system ]; }

etc=/etc/zonewatch
mq=/etc/mosquitto/zonewatch
ca_system=/etc/mosquitto/ca_certificates/zonewatch-ca.crt
cert_system=/etc/mosquitto/certs/zonewatch.crt
key_system=/etc/mosquitto/certs/zonewatch.key
changed=()                       # the services whose files this run changed
put() {   # put MODE DEST SOURCE [SERVICE]: install SOURCE as $R/DEST if it differs; note SERVICE as changed
    local mode=$1 dest=$R$2 src=$3 service=${4:-}
    mkdir -p "$(dirname "$dest")"
    if [ -e "$dest" ] && cmp -s "$src" "$dest"; then return 0; fi
    install -m "$mode" "$src" "$dest.new"
    mv -f "$dest.new" "$dest"
    say "wrote $2"
    [ -z "$service" ] || changed+=("$service")
}
digest() { if [ -e "$1" ]; then sha256sum <"$1"; fi; }   # digest FILE: its checksum, nothing when it is missing
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------------------------------------ packages
if [ "$live" = 1 ]; then
    packages=(prometheus-alertmanager openssl)
    [ -n "$broker" ] || packages+=(mosquitto)
    [ -n "$vm_url" ] || packages+=(victoria-metrics)
    missing=()
    for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# ------------------------------------------------------------------------------------------------ TLS
mkdir -p "$R$etc/pki"
if [ -n "$tls_ca" ]; then
    put 0644 "$etc/pki/ca.crt" "$tls_ca"
fi
if [ -z "$broker" ]; then
    if [ -n "$tls_cert" ]; then
        put 0644 "$cert_system" "$tls_cert" mosquitto
        put 0600 "$key_system" "$tls_key" mosquitto
        put 0644 "$ca_system" "$tls_ca" mosquitto
    elif [ ! -e "$R$key_system" ]; then
        # A private CA, made once: the probes and the other hosts verify the broker against its certificate.
        pki=$R$etc/pki
        if [ ! -e "$pki/ca.key" ]; then
            (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key")
            openssl req -x509 -new -key "$pki/ca.key" -sha256 -days 3650 -subj "/CN=ZoneWatch central CA" \
                -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
                -out "$pki/ca.crt" 2>/dev/null
            say "made a private CA: $etc/pki/ca.crt (its key, $etc/pki/ca.key, signs the broker's certificates)"
        fi
        sans="DNS:localhost,IP:127.0.0.1,DNS:$(hostname -f 2>/dev/null || hostname)"
        for n in "${tls_names[@]}"; do
            if [[ $n =~ ^[0-9.:]+$ ]]; then sans+=",IP:$n"; else sans+=",DNS:$n"; fi
        done
        (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server.key")
        openssl req -new -key "$tmp/server.key" -subj "/CN=$(hostname -f 2>/dev/null || hostname)" -out "$tmp/server.csr" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' "$sans" >"$tmp/ext"
        openssl x509 -req -in "$tmp/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 825 \
            -sha256 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
        put 0644 "$cert_system" "$tmp/server.crt" mosquitto
        put 0600 "$key_system" "$tmp/server.key" mosquitto
        put 0644 "$ca_system" "$pki/ca.crt" mosquitto
        say "the broker's certificate names $sans"
    fi
    [ "$live" = 0 ] || chown mosquitto: "$key_system"
fi
[ -e "$R$etc/pki/ca.crt" ] || die "no CA certificate for the broker: give --tls-ca"

# ------------------------------------------------------------------------------------------------ the collector
mkdir -p "$R$mq/secrets"
chmod 0700 "$R$mq/secrets"
if [ -n "$password_file" ]; then
    password=$(head -n 1 "$password_file")
elif [ -n "$broker" ]; then
    die "--broker needs --password-file"
else
    if [ ! -s "$R$mq/secrets/$name" ]; then   # render-mosquitto keeps a password it finds there
        (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$R$mq/secrets/$name")
    fi
    password=$(head -n 1 "$R$mq/secrets/$name")
fi
[ -n "$password" ] || die "the collector's broker password is empty"

mkdir -p "$R$etc/secrets"
if [ ! -s "$R$etc/secrets/relay-token" ]; then   # what Alertmanager sends the collector's MQTT relay
    (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$R$etc/secrets/relay-token")
fi
relay_token=$(head -n 1 "$R$etc/secrets/relay-token")
if [ -n "$inventory" ]; then
    [ -f "$inventory" ] || die "--inventory: no such file: $inventory"
    put 0640 "$etc/inventory.yaml" "$inventory" zonewatch-collector
elif [ ! -e "$R$etc/inventory.yaml" ]; then
    put 0640 "$etc/inventory.yaml" "$checkout/config/inventory.example.yaml" zonewatch-collector
fi
if [ ! -e "$R$etc/collector.yaml" ]; then
    peers=""
    [ -z "$peer" ] || peers=", peers: [\"http://$peer:9093\"]"
    {
        echo "# ZoneWatch collector, written once by deploy/central.sh: edit it, the script keeps it."
        echo "mqtt:"
        echo "  host: ${broker:-127.0.0.1}"
        echo "  port: 8883"
        echo "  username: $name"
        echo "  client_id: $name                  # keep it stable: the broker holds this session's queue"
        echo "  password: {env: ZW_COLLECTOR_MQTT_PASSWORD}   # in collector.env"
        echo "  tls: {ca_file: $etc/pki/ca.crt}"
        echo "storage: {type: victoriametrics, url: ${vm_url:-$vm_local}}"
        echo "queue: {path: /var/lib/zonewatch/intake.db}"
        echo "http: {listen: 127.0.0.1:9109}   # /metrics, and the MQTT relay for Alertmanager beside it"
        echo "inventory: inventory.yaml"
        [ -z "$zones" ] || echo "zones: [${zones//,/, }]   # this collector's shard"
        [ -z "$role" ] || echo "ha: {role: $role}"
        echo "alerting:"
        echo "  alertmanager: {url: http://127.0.0.1:9093$peers}"
        if [ -n "$peer" ]; then
            echo "  mqtt_delivery: alertmanager   # MQTT receivers through the relays: each sent once"
            echo "  relay_token: {env: ZW_RELAY_TOKEN}   # in collector.env; Alertmanager's configuration names it"
        fi
    } >"$tmp/collector.yaml"
    put 0640 "$etc/collector.yaml" "$tmp/collector.yaml" zonewatch-collector
fi
printf 'ZW_COLLECTOR_MQTT_PASSWORD=%s\nZW_RELAY_TOKEN=%s\n' "$password" "$relay_token" >"$tmp/collector.env"
put 0640 "$etc/collector.env" "$tmp/collector.env" zonewatch-collector

say "installing the collector (deploy/install.sh collector)"
bash "$here/install.sh" collector ${R:+--root "$R"} "${pass[@]}"
[ "$live" = 0 ] || chown root:zonewatch "$etc/collector.env" "$etc/collector.yaml" "$etc/inventory.yaml" \
    "$etc/secrets/relay-token"
zc=$R$prefix/collector/current/bin/zonewatch-collector
[ -x "$zc" ] || die "the collector's program is missing: $zc"
export ZW_COLLECTOR_MQTT_PASSWORD=$password ZW_RELAY_TOKEN=$relay_token
zw() { "$zc" -c "$R$etc/collector.yaml" --log-level warning "$@"; }
zw check-config >/dev/null

# ------------------------------------------------------------------------------------------------ mosquitto
if [ -z "$broker" ]; then
    args=(--out "$R$mq" --broker-dir "$mq" --collector-user "$name" --port 8883 --cafile "$ca_system"
          --certfile "$cert_system" --keyfile "$key_system")
    [ -z "$peer_name" ] || args+=(--peer "$peer_name")
    for zone in "${bridges[@]}"; do args+=(--bridge "$zone"); done
    before=$({ cat "$R$mq/acl" "$R$mq/mosquitto-limits.conf" 2>/dev/null || true; } | sha256sum)
    zw render-mosquitto "${args[@]}" | sed 's/^/central.sh: /'
    [ "$before" = "$(cat "$R$mq/acl" "$R$mq/mosquitto-limits.conf" | sha256sum)" ] || changed+=(mosquitto)
    {
        echo "# ZoneWatch's broker, written by deploy/central.sh from the files render-mosquitto wrote in $mq."
        echo "per_listener_settings true"
        cat "$R$mq/mosquitto-limits.conf" "$R$mq/mosquitto-listener.conf"
    } >"$tmp/zonewatch.conf"
    put 0644 /etc/mosquitto/conf.d/zonewatch.conf "$tmp/zonewatch.conf" mosquitto
    if [ "$live" = 1 ]; then   # the broker reads them as its own user when it reloads
        chown mosquitto: "$mq/passwd"
        chmod 0644 "$mq/acl"
    fi
fi

# ------------------------------------------------------------------------------------------------ VictoriaMetrics
if [ -z "$vm_url" ]; then
    # -dedup.minScrapeInterval=1ms: a point written twice (a batch replayed after a crash, or by both collectors of
    # an HA pair) is one point.
    printf '%s\nARGS="-storageDataPath=/var/lib/victoria-metrics -retentionPeriod=%s -dedup.minScrapeInterval=1ms -httpListenAddr=%s"\n' \
        "# Written by deploy/central.sh (ZoneWatch): run it again rather than editing this file." \
        "$retention" "$vm_listen" >"$tmp/vm"
    put 0644 /etc/default/victoria-metrics "$tmp/vm" victoria-metrics
fi

# ------------------------------------------------------------------------------------------------ vmauth
# Each carrier's reads go through vmauth, which forces the carrier's owner label on every query (README: Giving a
# carrier access). Its folder is outside /etc/zonewatch (root:zonewatch 0750, closed to vmauth's own user): auth.yml
# holds the passwords and is the one file vmauth reads (root:zonewatch-vmauth 0640); vmauth.env (its flags and the
# admin key) is read by systemd as root; secrets/ only by root.
vma=/etc/zonewatch-vmauth
vmauth_do=""                     # what the running vmauth needs: reload (new users) or restart (new flags or unit)
if [ "$with_vmauth" = 1 ]; then
    if [ "$live" = 1 ] && ! getent passwd zonewatch-vmauth >/dev/null; then
        useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \
            zonewatch-vmauth
        say "created the system user zonewatch-vmauth"
    fi
    mkdir -p "$R$vma"
    auth_before=$(digest "$R$vma/auth.yml")
    env_before=$(digest "$R$vma/vmauth.env")
    zw render-vmauth --out "$R$vma" --config-dir "$vma" --vm-url "$vm_local" --listen "$vmauth_listen" >/dev/null
    chmod 0750 "$R$vma"
    chmod 0700 "$R$vma/secrets"
    chmod 0640 "$R$vma/auth.yml"
    chmod 0600 "$R$vma/vmauth.env" "$R$vma"/secrets/*
    [ "$live" = 0 ] || chown root:zonewatch-vmauth "$vma" "$vma/auth.yml"
    if [ "$env_before" != "$(digest "$R$vma/vmauth.env")" ]; then
        say "wrote $vma/vmauth.env (vmauth listens on $vmauth_listen)"
        vmauth_do=restart
    fi
    if [ "$auth_before" != "$(digest "$R$vma/auth.yml")" ]; then
        users=$(grep -c '^- username:' "$R$vma/auth.yml")
        say "wrote $vma/auth.yml ($users users: zone-authority and one per carrier)"
        vmauth_do=${vmauth_do:-reload}
    fi
    unit_before=$(digest "$R/etc/systemd/system/zonewatch-vmauth.service")
    put 0644 /etc/systemd/system/zonewatch-vmauth.service "$here/zonewatch-vmauth.service"
    [ "$unit_before" = "$(digest "$R/etc/systemd/system/zonewatch-vmauth.service")" ] || vmauth_do=restart
fi

# ------------------------------------------------------------------------------------------------ Alertmanager
zw render-alertmanager --out "$tmp/alertmanager.yml" --secrets-dir "$tmp/am-secrets" >/dev/null
sed "s|$tmp/am-secrets|/etc/prometheus/zonewatch-secrets|g" "$tmp/alertmanager.yml" >"$tmp/am.yml"
put 0644 /etc/prometheus/alertmanager.yml "$tmp/am.yml" prometheus-alertmanager
for secret in "$tmp"/am-secrets/*; do
    [ -e "$secret" ] || continue
    put 0640 "/etc/prometheus/zonewatch-secrets/$(basename "$secret")" "$secret" prometheus-alertmanager
    [ "$live" = 0 ] || chown root:prometheus "/etc/prometheus/zonewatch-secrets/$(basename "$secret")"
done
am_args="--config.file=/etc/prometheus/alertmanager.yml --storage.path=/var/lib/prometheus/alertmanager"
if [ -n "$peer" ]; then
    advertise=${advertise:-$(hostname -I 2>/dev/null | awk '{print $1}')}
    [ -n "$advertise" ] || die "give --advertise: this host's address the other Alertmanager reaches"
    am_args+=" --web.listen-address=:9093 --cluster.listen-address=0.0.0.0:9094"
    am_args+=" --cluster.advertise-address=$advertise:9094 --cluster.peer=$peer:9094"
else
    am_args+=" --web.listen-address=127.0.0.1:9093 --cluster.listen-address="
fi
printf '%s\nARGS="%s"\n' "# Written by deploy/central.sh (ZoneWatch): run it again rather than editing this file." \
    "$am_args" >"$tmp/am-default"
put 0644 /etc/default/prometheus-alertmanager "$tmp/am-default" prometheus-alertmanager

# ------------------------------------------------------------------------------------------------ Grafana
mkdir -p "$R/opt/zonewatch/dashboards"
for board in "$checkout"/dashboards/*.json; do put 0644 "/opt/zonewatch/dashboards/$(basename "$board")" "$board"; done
sed "s|\${ZONEWATCH_VM_URL}|${vm_url:-$vm_local}|" "$checkout/dashboards/provisioning/datasources/zonewatch.yaml" \
    >"$tmp/ds.yaml"
sed "s|\${ZONEWATCH_DASHBOARDS}|/opt/zonewatch/dashboards|" "$checkout/dashboards/provisioning/dashboards/zonewatch.yaml" \
    >"$tmp/db.yaml"
put 0644 /etc/grafana/provisioning/datasources/zonewatch.yaml "$tmp/ds.yaml" grafana-server
put 0644 /etc/grafana/provisioning/dashboards/zonewatch.yaml "$tmp/db.yaml" grafana-server
graf=/etc/zonewatch/grafana
if [ "$with_vmauth" = 1 ]; then
    # An organisation per carrier, its one datasource vmauth as that carrier (render-grafana). The files go beside
    # Main Org's; the carriers' passwords reach Grafana through its environment (grafana.env, root 0600, read by
    # systemd through the drop-in below).
    env_before=$(digest "$R$graf/grafana.env")
    zw render-grafana --out "$R$graf" --secrets "$R$vma/secrets" --vmauth-url "$vmauth_url" >/dev/null
    chmod 0750 "$R$graf"
    if [ "$env_before" != "$(digest "$R$graf/grafana.env")" ]; then
        say "wrote $graf/grafana.env and orgs.txt"
        changed+=(grafana-server)
    fi
    put 0644 /etc/grafana/provisioning/datasources/zonewatch-carriers.yaml \
        "$R$graf/provisioning/datasources/zonewatch-carriers.yaml" grafana-server
    sed "s|\${ZONEWATCH_DASHBOARDS}|/opt/zonewatch/dashboards|" \
        "$R$graf/provisioning/dashboards/zonewatch-carriers.yaml" >"$tmp/db-carriers.yaml"
    put 0644 /etc/grafana/provisioning/dashboards/zonewatch-carriers.yaml "$tmp/db-carriers.yaml" grafana-server
    printf '%s\n[Service]\nEnvironmentFile=-%s/grafana.env\n' \
        "# Written by deploy/central.sh (ZoneWatch): the carriers' vmauth passwords for the provisioned datasources." \
        "$graf" >"$tmp/grafana-dropin"
    put 0644 /etc/systemd/system/grafana-server.service.d/zonewatch.conf "$tmp/grafana-dropin" grafana-server
fi

# ------------------------------------------------------------------------------------------------ services
local_services=prometheus-alertmanager.service
[ -n "$broker" ] || local_services+=" mosquitto.service"
[ -n "$vm_url" ] || local_services+=" victoria-metrics.service"
printf '%s\n[Unit]\nWants=%s\nAfter=%s\n' "# Written by deploy/central.sh: the central services this host runs start first." \
    "$local_services" "$local_services" >"$tmp/dropin"
put 0644 /etc/systemd/system/zonewatch-collector.service.d/central.conf "$tmp/dropin" zonewatch-collector
own_services="zonewatch-collector.service"
[ "$with_vmauth" = 0 ] || own_services+=" zonewatch-vmauth.service"
if systemd_up; then
    systemctl daemon-reload
    for unit in $local_services $own_services; do systemctl enable --quiet "$unit"; done
    for service in $(printf '%s\n' "${changed[@]}" | sort -u); do
        systemctl list-unit-files "$service.service" >/dev/null 2>&1 || continue
        if ! systemctl reload-or-restart "$service"; then die "$service did not take its new files: journalctl -u $service"; fi
        say "reloaded $service"
    done
    case "$vmauth_do" in   # reload: SIGHUP, vmauth reads auth.yml again (the unit's ExecReload)
        reload) systemctl reload-or-restart zonewatch-vmauth.service && say "reloaded zonewatch-vmauth" ;;
        restart) systemctl restart zonewatch-vmauth.service && say "restarted zonewatch-vmauth" ;;
    esac
    for unit in $local_services $own_services; do systemctl start "$unit"; done
elif [ "$live" = 1 ]; then
    say "systemd is not running here: start mosquitto, victoria-metrics, prometheus-alertmanager, $own_services"
fi
[ -z "$vmauth_do" ] || changed+=(zonewatch-vmauth)
say "done${changed[*]:+; changed: $(printf '%s\n' "${changed[@]}" | sort -u | tr '\n' ' ')}"
say "probes verify the broker with $etc/pki/ca.crt; their passwords are in $mq/secrets/ (render-mosquitto)"
if [ "$with_vmauth" = 1 ]; then
    say "carriers read through vmauth at $vmauth_url (users in $vma/auth.yml, passwords in $vma/secrets/)"
    say "Grafana: its provisioning is in /etc/grafana/provisioning (zonewatch.yaml: Main Org; zonewatch-carriers.yaml:"
    say "  an organisation per carrier), the carriers' passwords in $graf/grafana.env, which a Grafana here reads"
    say "  through grafana-server.service.d/zonewatch.conf. A Grafana elsewhere: copy $graf/provisioning/ and"
    say "  grafana.env there, with the dashboards (README: Giving a carrier access). Create the carriers' organisations"
    orgs=$(awk -F'\t' '!/^#/ {printf "%s%s %s", sep, $1, $2; sep="; "}' "$R$graf/orgs.txt")
    say "  in the order of $graf/orgs.txt: $orgs"
fi
