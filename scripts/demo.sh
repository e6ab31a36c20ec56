#!/usr/bin/env bash
# `make demo`: the main job end to end on the built-in lab. Grows with the product.
# State goes to $VMVAULT_DEMO_HOME (default .demo/ in the checkout), recreated each run;
# the lab guests are left running so you can explore: `vmvault lab down` removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin/vmvault
export VMVAULT_HOME="${VMVAULT_DEMO_HOME:-$PWD/.demo}"
CONSOLE=127.0.0.1:8479
# the console server a previous run left running (its last step) is stopped first
if [ -f "$VMVAULT_HOME/console.pid" ]; then
  pid=$(cat "$VMVAULT_HOME/console.pid")
  if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q "vmvault serve"; then
    kill -TERM "$pid"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
fi
# an immutable vault's files carry the Linux immutable attribute (docs/immutability.md)
[ -d "$VMVAULT_HOME" ] && chattr -R -i "$VMVAULT_HOME" 2>/dev/null || true
rm -rf "$VMVAULT_HOME"

step() { printf '\n\033[1m== %s\033[0m\n$ vmvault %s\n' "$1" "${*:2}"; }
# exit code 3 means "completed with warnings": expected for some steps below
ok_or_warn() { "$@" || { rc=$?; [ "$rc" = 3 ] || exit "$rc"; }; }

step "Lab: real Linux guests (Debian kernel + busybox + qemu-ga) on libvirt/QEMU" lab up
$V lab down >/dev/null
$V lab up --count 2 --variant standard --variant no-agent --variant raw-disk --variant passthrough --variant app-hook

step "Create a vault for location 'local' (host qemu:///system is added)" vault create demo --location local
$V vault create demo --location local

step "Discover every VM of the location (a discovery job)" discover
ok_or_warn $V discover
$V vm list

step "Register VMs: one register job each; warnings for raw and pass-through disks" \
  register lab-standard-1 lab-standard-2 lab-raw-disk-1 lab-passthrough-1 lab-app-hook-1
ok_or_warn $V register lab-standard-1 lab-standard-2 lab-raw-disk-1 lab-passthrough-1 lab-app-hook-1

step "A VM without a guest agent is refused, with a code and a remedy" register lab-no-agent-1
if $V register lab-no-agent-1; then echo "unexpected success" >&2; exit 1; fi

step "...unless crash-consistent backups are accepted" register lab-no-agent-1 --crash-consistent
ok_or_warn $V register lab-no-agent-1 --crash-consistent

step "Registering twice is refused before anything changes" register lab-standard-1
if $V register lab-standard-1; then echo "unexpected success" >&2; exit 1; fi

step "Registered VMs" vm list --state registered
$V vm list --state registered

step "Back up a running VM: guest frozen just around the point in time, full read" backup lab-standard-1
guest_write() {  # write N MiB of random data in the guest through the guest agent
  .venv/bin/python - "$1" "$2" <<'PY'
import sys, libvirt
from vmvault.hypervisor.libvirt import agent
dom = libvirt.open("qemu:///system").lookupByName(sys.argv[1])
res = agent.exec_(dom, "/bin/sh", ["-c", f"dd if=/dev/urandom of=/data/demo.bin bs=1M count={sys.argv[2]} 2>/dev/null; sync"], timeout=120)
assert res.exitcode == 0, res.stderr
PY
}
guest_write lab-standard-1 32
ok_or_warn $V backup lab-standard-1

step "Change 8 MiB in the guest; the next backup reads only the dirty extents" backup lab-standard-1
guest_write lab-standard-1 8
ok_or_warn $V backup lab-standard-1

step "A raw disk is re-read in full each time but deduplicated; a LUN is skipped" backup lab-raw-disk-1 lab-passthrough-1
ok_or_warn $V backup lab-raw-disk-1 lab-passthrough-1

point_field() {  # point_field VM FIELD: a field of the VM's newest point
  $V points list "$1" --json | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)[0]['$2'])"
}
step "Consistency, honestly: the app-hook guest's hook reports success for this very freeze" backup lab-app-hook-1
ok_or_warn $V backup lab-app-hook-1
$V points show "$(point_field lab-app-hook-1 id)" | grep -iE "consisten|method|frozen|paused|hook"
test "$(point_field lab-app-hook-1 consistency)" = application-consistent

step "A VM without application hooks cannot give an application-consistent point: refused, no point kept" backup lab-standard-2 --require application-consistent
if $V backup lab-standard-2 --require application-consistent; then echo "unexpected success" >&2; exit 1; fi

step "A backup set: two VMs frozen together, one instant, a point for each or for none" backup lab-standard-1 lab-app-hook-1 --set
ok_or_warn $V backup lab-standard-1 lab-app-hook-1 --set
set_id=$(point_field lab-app-hook-1 set_id)
$V points list --set "$set_id"

step "Selective disks: leave lab-raw-disk-1's vdb out; its next point lists it as excluded by user" vm update lab-raw-disk-1 --exclude-disk vdb
$V vm update lab-raw-disk-1 --exclude-disk vdb
ok_or_warn $V backup lab-raw-disk-1
$V points show "$(point_field lab-raw-disk-1 id)" | grep -i "vdb"
$V vm update lab-raw-disk-1 --include-disk vdb

step "A VM a cluster manager owns is never paused or replaced: restore --replace is refused" host update qemu:///system --cluster-managed lab-raw-disk-1
$V host update qemu:///system --cluster-managed lab-raw-disk-1
$V vm show lab-raw-disk-1 | grep -i cluster
if $V restore lab-raw-disk-1 --point "$(point_field lab-raw-disk-1 id)" --replace; then echo "unexpected success" >&2; exit 1; fi
$V host update qemu:///system --not-cluster-managed lab-raw-disk-1

step "Recovery points" points list
$V points list
last=$($V points list lab-standard-1 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

step "Restore the disks of the newest point as sparse qcow2 images" restore lab-standard-1 --point "$last" --disks-only --dir .demo/restore
ok_or_warn $V restore lab-standard-1 --point "$last" --disks-only --dir "$VMVAULT_HOME/restore"
ls -ls "$VMVAULT_HOME/restore"

step "File-level restore: the point's file systems, a directory, one file extracted (no disk restored)" files ls "$last" /data
$V files ls "$last"
$V files ls "$last" /data
rm -rf "$VMVAULT_HOME/files" && mkdir -p "$VMVAULT_HOME/files"
first=$($V files find "$last" '*' --disk vda --json | .venv/bin/python -c 'import json,sys; print(next(e["path"] for e in json.load(sys.stdin) if e["kind"] == "file"))')
$V files get "$last" "$first" --disk vda --to "$VMVAULT_HOME/files"
ls -l "$VMVAULT_HOME/files"

step "A point served as a disk over NBD (an export job), read with nbdcopy, stopped with jobs cancel" export "$last" --disk vdb
$V export "$last" --disk vdb --json > "$VMVAULT_HOME/export.json" &
for _ in $(seq 100); do [ -s "$VMVAULT_HOME/export.json" ] && break; sleep 0.1; done
read -r export_job export_uri < <(.venv/bin/python -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["job"], d["disks"][0]["uri"])' "$VMVAULT_HOME/export.json")
nbdcopy "$export_uri" "$VMVAULT_HOME/vdb-export.raw" && ls -ls "$VMVAULT_HOME/vdb-export.raw"
$V jobs cancel "$export_job" && wait
rm -f "$VMVAULT_HOME/vdb-export.raw"

step "Restore test: boot the point as a throw-away VM (NICs down), check its mounts, record it" restore-test lab-standard-1 --point "$last"
ok_or_warn $V restore-test lab-standard-1 --point "$last"

step "Instant recovery: the VM runs from the vault at once, its disks are copied while it runs, then pivoted" restore lab-standard-1 --point "$last" --instant --as-new lab-instant --dir /var/lib/vmvault/demo-instant
rm -rf /var/lib/vmvault/demo-instant && mkdir -p /var/lib/vmvault/demo-instant && chmod 755 /var/lib/vmvault/demo-instant  # QEMU must enter it
ok_or_warn $V restore lab-standard-1 --point "$last" --instant --as-new lab-instant --dir /var/lib/vmvault/demo-instant
virsh -c qemu:///system domblklist lab-instant  # local images only: no NBD, no overlay
virsh -c qemu:///system destroy lab-instant >/dev/null; virsh -c qemu:///system undefine lab-instant >/dev/null
rm -rf /var/lib/vmvault/demo-instant /var/lib/libvirt/images/lab-instant-*

step "A policy: daily at 02:30 Berlin time, keep 7 daily + 4 weekly + 12 monthly points" policy create gold --schedule daily@02:30 --tz Europe/Berlin --daily 7 --weekly 4 --monthly 12
ok_or_warn $V policy create gold --schedule daily@02:30 --tz Europe/Berlin --daily 7 --weekly 4 --monthly 12

step "Protect VMs with it (lab-standard-2 gets its initial backup now; retention runs after it)" protect lab-standard-1 lab-standard-2 --policy gold --backup-now
ok_or_warn $V protect lab-standard-1 --policy gold
ok_or_warn $V protect lab-standard-2 --policy gold --backup-now
$V protection list

step "The server: scheduler + job workers + REST API (in the background)" serve --listen 127.0.0.1:8479
# the API wants a token: an admin one for the demo (the console's sign-in at the end uses it too)
export DEMO_TOKEN=$($V token create demo-admin --role admin | tail -n 1)
$V serve --listen 127.0.0.1:8479 >"$VMVAULT_HOME/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
api() { .venv/bin/python -c 'import os, sys, httpx; r = httpx.request(sys.argv[1], "http://127.0.0.1:8479/api/v1" + sys.argv[2], headers={"Authorization": "Bearer " + os.environ["DEMO_TOKEN"]}, timeout=30); print(r.text)' "$@"; }
for _ in $(seq 100); do api GET /health >/dev/null 2>&1 && break; sleep 0.2; done
api GET /health

step "Queue a backup for the server and follow it to the end" backup lab-standard-1 --no-wait
job=$($V backup lab-standard-1 --no-wait --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "queued job $job"
ok_or_warn $V jobs wait "$job"

step "On the server's host, listings are answered by the server on its local socket (mode 0600, no token; docs/server.md)" "jobs list --limit 3"
ls -l "$VMVAULT_HOME/api.sock"
$V jobs list --limit 3
TIMEFORMAT='%R s'
for mode in 1 0; do
  printf 'dashboard with VMVAULT_LOCAL_SOCKET=%s (%s): ' "$mode" "$([ "$mode" = 1 ] && echo "asks the server" || echo "opens the catalog itself")"
  { time VMVAULT_LOCAL_SOCKET=$mode $V dashboard >/dev/null; } 2>&1
done
unset TIMEFORMAT

step "The same through the REST API: queue, then cancel while it is queued or running" "(POST /api/v1/backups, POST /api/v1/jobs/ID/cancel)"
job=$(.venv/bin/python -c 'import os, httpx; print(httpx.post("http://127.0.0.1:8479/api/v1/backups", json={"vms": ["lab-raw-disk-1"]}, headers={"Authorization": "Bearer " + os.environ["DEMO_TOKEN"]}).json()[0]["id"])')
api POST "/jobs/$job/cancel" >/dev/null
$V jobs wait "$job" || true
$V jobs show "$job"

step "Stop the server (SIGTERM): running jobs are cancelled cleanly" "(kill -TERM)"
kill -TERM "$server"; wait "$server" || true
trap - EXIT
tail -n 8 "$VMVAULT_HOME/serve.log"

step "Verify re-reads and re-hashes every chunk of every point" verify --all
$V verify --all

step "Garbage collection (nothing to reclaim: every chunk is referenced)" gc
$V gc

step "The catalog on PostgreSQL (docs/deployment.md): Debian's server, started by the lab on a unix socket" lab catalog up
$V lab catalog down >/dev/null  # recreated each run, like the demo's state
pgurl=$($V lab catalog up --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["url"])')
echo "VMVAULT_CATALOG_URL=$pgurl"
VMVAULT_CATALOG_URL=$pgurl $V vault create pg-demo --location local --path "$VMVAULT_HOME/pg-vault"
VMVAULT_CATALOG_URL=$pgurl ok_or_warn $V discover
echo "every job records the node that ran it:"
VMVAULT_CATALOG_URL=$pgurl $V jobs list --json | .venv/bin/python -c 'import json,sys; [print(j["id"], j["type"], j["state"], "node", j["node"]) for j in json.load(sys.stdin)]'

step "The lab's object store: a real single-node Ceph cluster with the RADOS Gateway (S3)" lab storage up
s3=$($V lab storage up --json)
s3get() { .venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$s3" "$1"; }
endpoint=$(s3get endpoint)
export AWS_ACCESS_KEY_ID=$(s3get access_key) AWS_SECRET_ACCESS_KEY=$(s3get secret_key)
echo "endpoint $endpoint, access key $AWS_ACCESS_KEY_ID (the secret key is in the JSON)"
.venv/bin/python - "$endpoint" <<'PY'
import sys, boto3  # the operator makes a bucket with the provider's tools; here, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
if "vmvault-demo" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket="vmvault-demo")
# the demo's state is recreated each run: so is its vault under the prefix demo/
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="vmvault-demo", Prefix="demo/"):
    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
    if keys:
        s3.delete_objects(Bucket="vmvault-demo", Delete={"Objects": keys})
print("bucket vmvault-demo ready (prefix demo/ empty)")
PY

step "A vault off the host is refused for a bucket that does not exist, with nothing created" vault create offsite --storage s3 --bucket no-such-bucket
if $V vault create offsite --location local --storage s3 --endpoint "$endpoint" --bucket no-such-bucket; then
  echo "unexpected success" >&2; exit 1
fi

step "An S3 vault (credentials from the environment; never stored, never printed)" vault create offsite --location local --storage s3 --endpoint "$endpoint" --bucket vmvault-demo --prefix demo
$V vault create offsite --location local --storage s3 --endpoint "$endpoint" --bucket vmvault-demo --prefix demo
$V vault list

step "Copy lab-standard-1's points off the host: only the chunks the S3 vault lacks are sent, each copy verified there" copy --from demo --to offsite lab-standard-1
ok_or_warn $V copy --from demo --to offsite lab-standard-1

step "Each point says which vaults hold it" points list lab-standard-1
$V points list lab-standard-1

# the policy's retention has pruned older points since: take lab-standard-1's newest again
last=$($V points list lab-standard-1 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
step "Lose a chunk of the local vault: verify finds it and heals it from the S3 copy" verify --point "$last" --vault demo
.venv/bin/python - "$VMVAULT_HOME/vaults/demo" "$last" <<'PY'
import sys
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.chunkstore import chunk_key
from vmvault.dataplane.vault import VaultStore
store = VaultStore.open(sys.argv[1])
m = store.read_manifest(sys.argv[2])
cid = next(c for d in m.disks if d.index for c in store.read_point_index(m, d.target).ids if c != ZERO_ID)
store.backend.delete(chunk_key(cid))
print(f"deleted chunk {cid.hex()[:16]}… of point {sys.argv[2]}")
PY
ok_or_warn $V verify --point "$last" --vault demo
$V verify --point "$last" --vault demo

step "Restore straight from the S3 copy" restore lab-standard-1 --point "$last" --from-vault offsite --disks-only --dir .demo/restore-s3
ok_or_warn $V restore lab-standard-1 --point "$last" --from-vault offsite --disks-only --dir "$VMVAULT_HOME/restore-s3" --format raw
ls -ls "$VMVAULT_HOME/restore-s3"

oldest=$($V points list lab-standard-1 --vault demo --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
step "Soft delete: a deleted point stays restorable-by-undelete for the vault's period (14 days), its chunks kept by GC" points delete "$oldest" --vault demo
$V points delete "$oldest" --vault demo
$V points list --deleted --vault demo
if $V restore lab-standard-1 --point "$oldest" --vault demo --disks-only --dir "$VMVAULT_HOME/restore-deleted"; then
  echo "unexpected success" >&2; exit 1
fi
$V points undelete "$oldest" --vault demo

step "An encrypted vault's paper key (and QR code): lose the key file, get access back, change the passphrase" vault key export sealed --qr sealed.png
(
  export VMVAULT_HOME="$VMVAULT_HOME/keys-demo" VMVAULT_PASSPHRASE="demo passphrase"
  $V vault create sealed --location local --encrypt
  $V vault key export sealed --qr "$VMVAULT_HOME/sealed.png" | tee "$VMVAULT_HOME/sealed.paper"
  rm "$VMVAULT_HOME/keys/sealed.key"
  echo "(key file removed)"
  VMVAULT_NEW_PASSPHRASE="from paper" $V vault key import sealed --from "$VMVAULT_HOME/sealed.paper"
  VMVAULT_PASSPHRASE="from paper" VMVAULT_NEW_PASSPHRASE="second" $V vault key change-passphrase sealed
  if $V vault key change-passphrase sealed 2>&1; then echo "unexpected success" >&2; exit 1; fi
)

step "Disaster recovery: a new machine with an empty catalog attaches the S3 vault from the storage alone and restores from it" vault attach offsite --location dr --storage s3 --endpoint "$endpoint" --bucket vmvault-demo --prefix demo
(
  export VMVAULT_HOME="$VMVAULT_HOME/dr-host"
  $V vault attach offsite --location dr --storage s3 --endpoint "$endpoint" --bucket vmvault-demo --prefix demo
  $V points list lab-standard-1 --vault offsite
  ok_or_warn $V restore lab-standard-1 --point "$last" --vault offsite --disks-only --dir "$VMVAULT_HOME/restore" --format raw
  ls -ls "$VMVAULT_HOME/restore"
)

step "Immutable vault: a point kept for 30 days cannot be deleted, by vmvault or below it (the Linux immutable attribute)" vault update demo --immutable
$V vault update demo --immutable
$V points lock "$last" --keep-until "$(date -u -d '+30 days' +%Y-%m-%d)"
if $V points delete "$last" --vault demo; then echo "unexpected success" >&2; exit 1; fi

step "Dashboard of each vault (the S3 one holds the copies)" dashboard --vault demo
$V dashboard --vault demo
$V dashboard --vault offsite

step "Every operation is a job" jobs list --since 1h
$V jobs list --since 1h
first=$($V jobs list --type register --status failed --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
step "A failed job, with its log" jobs show "$first"
$V jobs show "$first"

step "The web console: 'vmvault serve' stays running; sign in with the demo's admin token" serve --listen "$CONSOLE"
token=$DEMO_TOKEN
# two vaults now (demo, offsite): the server's default vault is the one the console opens on
VMVAULT_VAULT=demo setsid $V serve --listen "$CONSOLE" >"$VMVAULT_HOME/console.log" 2>&1 </dev/null &
echo $! >"$VMVAULT_HOME/console.pid"
for _ in $(seq 150); do
  .venv/bin/python -c 'import sys, httpx; httpx.get(sys.argv[1], timeout=2).raise_for_status()' \
    "http://$CONSOLE/api/v1/health" 2>/dev/null && break
  sleep 0.2
done
purge_point=$($V points list lab-raw-disk-1 --vault demo --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
step "Multi-user authorization: an early purge of a soft-deleted point is held until a second admin approves it" points purge "$purge_point" --vault demo
$V vault update demo --approvals second-admin
$V points delete "$purge_point" --vault demo
rc=0; $V points purge "$purge_point" --vault demo || rc=$?
test "$rc" = 4 || { echo "expected the purge to be held (exit 4), got $rc" >&2; exit 1; }
request=$($V approvals list --state pending --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
if $V approvals approve "$request"; then echo "unexpected success: the requester approved its own request" >&2; exit 1; fi
echo "(the second admin: the demo's token, through the server)"
$V --server "http://$CONSOLE" --token "$token" approvals approve "$request"
$V approvals show "$request"
echo "(the remote CLI: a call the server holds prints and exits 4 as locally; the local admin rejects it)"
rc=0; $V --server "http://$CONSOLE" --token "$token" vault update demo --approvals off || rc=$?
test "$rc" = 4 || { echo "expected the remote call to be held (exit 4), got $rc" >&2; exit 1; }
request=$($V approvals list --state pending --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
$V approvals reject "$request"

step "A second libvirt host: its own libvirtd in its own mount and PID namespace, qemu+tcp on loopback" lab host up
$V lab host down >/dev/null  # a fresh one each run (it keeps what earlier runs restored on it)
host2_json=$($V lab host up --json)
host2=$(echo "$host2_json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["uri"])')
pull2=$(echo "$host2_json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["pull_tls"])')
echo "second host at $host2"
$V lab up --host "$host2" --variant standard
guest2=$($V lab status --host "$host2" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')
$V host add "$host2" --location local
step "Mark it pulled over NBD with TLS (any node would back it up), then back to its own node" host update "$host2" --pull-tls "$pull2"
$V host update "$host2" --pull-tls "$pull2"
$V host list
$V host update "$host2" --no-pull-tls
$V discover --vault demo
$V register "$guest2" --vault demo
step "This node serves qemu:///system: a backup of the second host's VM is refused up front" backup "$guest2"
rc=0; $V backup "$guest2" --vault demo || rc=$?
test "$rc" = 2 || { echo "expected HOST_NOT_SERVED (exit 2), got $rc" >&2; exit 1; }
step "The node of the second host (VMVAULT_NODE_HOST) backs it up and restores it as new" backup "$guest2"
VMVAULT_NODE_HOST="$host2" $V backup "$guest2" --vault demo
point2=$($V points list "$guest2" --vault demo --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
VMVAULT_NODE_HOST="$host2" $V restore "$guest2" --point "$point2" --as-new "$guest2-copy"

.venv/bin/python scripts/screenshots.py --url "http://$CONSOLE" --token "$token" \
  --out "$VMVAULT_HOME/screenshots" --page dashboard

printf '\nDemo state is in %s (export VMVAULT_HOME=%s to explore); the lab guests and the object store are still running.\n' \
  "$VMVAULT_HOME" "$VMVAULT_HOME"
printf 'Remove them with: VMVAULT_HOME=%s .venv/bin/vmvault lab down; the object store with: .venv/bin/vmvault lab storage down; the PostgreSQL catalog with: .venv/bin/vmvault lab catalog down; the second host with: .venv/bin/vmvault lab host down\n' "$VMVAULT_HOME"
printf '\n\033[1mThe web console is running (pid %s, log %s):\033[0m\n' "$(cat "$VMVAULT_HOME/console.pid")" "$VMVAULT_HOME/console.log"
printf '  URL:         http://%s/console/\n' "$CONSOLE"
printf '  admin token: %s\n' "$token"
printf '  dashboard:   %s\n' "$VMVAULT_HOME/screenshots/dashboard.png"
printf 'Stop it with: kill %s (the next make demo stops it too)\n' "$(cat "$VMVAULT_HOME/console.pid")"
