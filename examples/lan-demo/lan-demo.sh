#!/usr/bin/env bash
# lan-demo.sh: three Convene peers on a virtual LAN find each other by mDNS,
# join a room and exchange presence, with no addresses given to any of them.
#
# It builds a small LAN out of Linux network namespaces:
#
#                    ┌──────────── switch namespace ────────────┐
#                    │                 bridge br0               │
#                    │          p1         p2         p3        │
#                    └──────────┼──────────┼──────────┼─────────┘
#                          veth │     veth │     veth │
#                    ┌──────────┼─┐ ┌──────┼─────┐ ┌──┼─────────┐
#                    │ eth0 10.99.0.1 │ eth0 10.99.0.2 │ eth0 10.99.0.3
#                    │  node1     │ │  node2     │ │  node3     │
#                    └────────────┘ └────────────┘ └────────────┘
#
# and runs `peer run --json --ephemeral --name nodeN --room lan` in each node
# namespace. Nothing is added to the host's own network: every interface and
# address lives inside namespaces this script creates, and it deletes them
# when it exits, whatever happens (trap on EXIT, INT and TERM).
#
# Steps: (1) the three nodes discover each other (mDNS), connect and see each
# other join the room; (2) node1 sets its presence status {"ready":true} and
# nodes 2 and 3 receive it; (3) node3 quits and nodes 1 and 2 see it leave
# (reason "left"); (4) nodes 1 and 2 quit cleanly. Then a summary.
#
# Usage, as root (network namespaces need it), from the repository root:
#   bash examples/lan-demo/lan-demo.sh
#
# Environment:
#   PEER_BIN=path      use this peer binary instead of building ./cmd/peer
#   LAN_DEMO_OUT=dir   copy the nodes' NDJSON output (nodeN.jsonl) and stderr
#                      (nodeN.err) into dir before cleaning up
#   LAN_DEMO_STEP_TIMEOUT=seconds   how long each step may take (default 30)
#
# Exit status 0 when every step passed; otherwise 1 with a line starting with
# "lan-demo: FAIL:" on stderr (and the tail of each node's output).
set -euo pipefail

ROOM=lan
STEP_TIMEOUT=${LAN_DEMO_STEP_TIMEOUT:-30}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

prefix="cvlan-$$"
sw="$prefix-switch"
nodes=(node1 node2 node3)
work=$(mktemp -d "${TMPDIR:-/tmp}/lan-demo.XXXXXX")
declare -A pid=()     # node -> pid of its peer process
declare -A fd=()      # node -> fd of the write end of its stdin FIFO
running=()            # nodes that must be running
created_ns=()

log() { printf '%s\n' "$*"; }
now_ms() { date +%s%3N; }
t_start=$(now_ms)
elapsed() { awk -v ms=$(($(now_ms) - t_start)) 'BEGIN { printf "%.2f s", ms / 1000 }'; }

die() {
	echo "lan-demo: FAIL: $*" >&2
	for n in "${nodes[@]}"; do
		for f in "$work/$n.jsonl" "$work/$n.err"; do
			if [ -s "$f" ]; then
				echo "---- last lines of $(basename "$f")" >&2
				tail -n 15 "$f" >&2
			fi
		done
	done
	exit 1
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM ERR
	# Ask the nodes still running to stop (SIGTERM: they say goodbye and
	# exit), then kill what is left after 5 s.
	for n in "${!pid[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null; done
	for _ in $(seq 50); do
		local alive=0
		for n in "${!pid[@]}"; do kill -0 "${pid[$n]}" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for n in "${!pid[@]}"; do
		kill -KILL "${pid[$n]}" 2>/dev/null
		wait "${pid[$n]}" 2>/dev/null
	done
	for n in "${!fd[@]}"; do eval "exec ${fd[$n]}>&-"; done
	for ns in "${created_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
	if [ -n "${LAN_DEMO_OUT:-}" ]; then
		mkdir -p "$LAN_DEMO_OUT" && cp "$work"/*.jsonl "$work"/*.err "$LAN_DEMO_OUT"/ 2>/dev/null
	fi
	rm -rf "$work"
	if [ "${#created_ns[@]}" -gt 0 ]; then log "cleaned up: namespaces $prefix-* deleted"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'die "line $LINENO: command failed: $BASH_COMMAND"' ERR

# ---- preflight
[ "$(id -u)" = 0 ] || die "needs root to create network namespaces: run it from a root shell (su -, or sudo -i where sudo exists)"
command -v ip >/dev/null || die "the ip command (Debian package iproute2) is missing"
log "== lan-demo: 3 Convene peers on a virtual LAN, discovery by mDNS only"
log "namespaces: $prefix-*"

# ---- build peer
if [ -n "${PEER_BIN:-}" ]; then
	peer=$PEER_BIN
	log "using peer binary $peer"
else
	command -v go >/dev/null || die "go is missing (or set PEER_BIN)"
	log "building peer (go build ./cmd/peer)..."
	(cd "$root" && go build -o "$work/peer" ./cmd/peer) || die "go build ./cmd/peer failed"
	peer=$work/peer
fi

# ---- the LAN: a bridge in a switch namespace, one veth per node
ns_add() {
	ip netns add "$1" || die "ip netns add $1 failed"
	created_ns+=("$1")
}
ns_add "$sw"
ip -n "$sw" link set lo up
ip -n "$sw" link add br0 type bridge mcast_snooping 0
ip -n "$sw" link set br0 up
i=0
for n in "${nodes[@]}"; do
	i=$((i + 1))
	ns="$prefix-$n"
	ns_add "$ns"
	ip -n "$sw" link add "p$i" type veth peer name eth0 netns "$ns"
	ip -n "$sw" link set "p$i" master br0
	ip -n "$sw" link set "p$i" up
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 multicast on
	ip -n "$ns" addr add "10.99.0.$i/24" dev eth0
	ip -n "$ns" link set eth0 up
done
log "LAN up: bridge br0 in $sw; node1..3 at 10.99.0.1..3/24 (multicast on)"

# ---- start the nodes: no --listen, no --bootstrap, mDNS on (the default)
fdn=3
for n in "${nodes[@]}"; do
	mkfifo "$work/$n.in"
	# Hold the FIFO open read-write, so the node's stdin stays open until we
	# send "quit" (end of input would make the node leave).
	eval "exec $fdn<>\"\$work/\$n.in\""
	fd[$n]=$fdn
	fdn=$((fdn + 1))
done
for n in "${nodes[@]}"; do
	# 3>&- 4>&- 5>&-: a node does not hold the other nodes' FIFOs open.
	ip netns exec "$prefix-$n" "$peer" run --json --ephemeral --name "$n" --room "$ROOM" --timeout 5s \
		<"$work/$n.in" >"$work/$n.jsonl" 2>"$work/$n.err" 3>&- 4>&- 5>&- &
	pid[$n]=$!
	running+=("$n")
done
log "started node1..3 ($(elapsed))"

# ---- helpers on the nodes' NDJSON output (one event per line; docs/CLI.md)
alive_or_die() {
	for n in "$@"; do
		if ! kill -0 "${pid[$n]}" 2>/dev/null; then
			local st=0
			wait "${pid[$n]}" || st=$?
			unset "pid[$n]"
			die "$n exited early (status $st)"
		fi
	done
}
# wait_until DESCRIPTION COMMAND...: poll COMMAND every 50 ms, up to STEP_TIMEOUT.
wait_until() {
	local what=$1
	shift
	local deadline=$(($(now_ms) + STEP_TIMEOUT * 1000))
	until "$@"; do
		alive_or_die "${running[@]}"
		[ "$(now_ms)" -lt "$deadline" ] || die "timed out after ${STEP_TIMEOUT}s waiting for $what"
		sleep 0.05
	done
}
has() { grep -q -- "$2" "$work/$1.jsonl" 2>/dev/null; }                         # has NODE REGEX
saw_join() { has "$1" "\"type\":\"member-joined\",.*\"name\":\"$2\",.*\"self\":false"; } # saw_join NODE OTHER
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
event_time() { grep -m1 -- "$2" "$work/$1.jsonl" | field time; }                # event_time NODE REGEX
ms_between() { # RFC 3339 times -> milliseconds from $1 to $2
	awk -v a="$(date -d "$1" +%s%N)" -v b="$(date -d "$2" +%s%N)" 'BEGIN { printf "%.1f ms", (b - a) / 1e6 }'
}

# ---- step 1: discovery and membership
all_ready() { for n in "${nodes[@]}"; do has "$n" '"type":"ready"' || return 1; done; }
wait_until "the nodes to start" all_ready
declare -A peerid=()
for n in "${nodes[@]}"; do
	peerid[$n]=$(grep -m1 '"type":"ready"' "$work/$n.jsonl" | field peer)
	addrs=$(grep -m1 '"type":"ready"' "$work/$n.jsonl" | grep -o '/ip4/10\.99\.0\.[0-9]*/[a-z]*/[0-9]*' | sort -u | tr '\n' ' ')
	log "$n is ${peerid[$n]}, listening on ${addrs:-?}"
done
all_saw_all() {
	for n in "${nodes[@]}"; do
		for m in "${nodes[@]}"; do
			[ "$n" = "$m" ] || saw_join "$n" "$m" || return 1
		done
	done
}
log "-- step 1: waiting for the nodes to find each other by mDNS and meet in room \"$ROOM\""
wait_until "every node to see the other two join room $ROOM" all_saw_all
log "all 3 nodes see each other in room \"$ROOM\" ($(elapsed) since start)"

# ---- step 2: presence
log "-- step 2: node1 sets its presence: set status {\"ready\":true}"
echo 'set status {"ready":true}' >&"${fd[node1]}"
status_re='"type":"presence",.*"name":"node1",.*"key":"status","value":{"ready":true},"cause":"remote"'
got_status() { has node2 "$status_re" && has node3 "$status_re"; }
wait_until "node2 and node3 to receive node1's status" got_status
has node1 '"type":"ok",.*"command":"set"' || die "node1 did not acknowledge the set command"
set_time=$(event_time node1 '"type":"ok",.*"command":"set"')
log "node2 and node3 received node1's status {\"ready\":true} ($(elapsed) since start)"

# ---- step 3: a node leaves
log "-- step 3: node3 quits; the others should see it leave (reason left)"
echo quit >&"${fd[node3]}"
running=(node1 node2)
left_re='"type":"member-left",.*"name":"node3",.*"self":false,"reason":"left"'
saw_leave() {
	for n in node1 node2; do
		if has "$n" '"type":"member-left",.*"name":"node3",.*"self":false,"reason":"timeout"'; then
			die "$n saw node3 go with reason timeout, not left: node3's goodbye did not reach it"
		fi
	done
	has node1 "$left_re" && has node2 "$left_re"
}
wait_until "node1 and node2 to see node3 leave" saw_leave
log "node1 and node2 saw node3 leave, reason \"left\" ($(elapsed) since start)"

# ---- step 4: clean shutdown
log "-- step 4: node1 and node2 quit"
echo quit >&"${fd[node1]}"
echo quit >&"${fd[node2]}"
running=()
for n in "${nodes[@]}"; do
	deadline=$(($(now_ms) + STEP_TIMEOUT * 1000))
	while kill -0 "${pid[$n]}" 2>/dev/null; do
		[ "$(now_ms)" -lt "$deadline" ] || die "$n did not exit after quit"
		sleep 0.05
	done
	status=0
	wait "${pid[$n]}" || status=$?
	unset "pid[$n]"
	[ "$status" = 0 ] || die "$n exited with status $status"
	has "$n" '"type":"stopped"' || die "$n exited without its stopped event"
done
log "all nodes stopped cleanly"

# ---- summary
log ""
log "== summary"
for n in "${nodes[@]}"; do
	start=$(event_time "$n" '"type":"ready"')
	parts=()
	for m in "${nodes[@]}"; do
		[ "$n" = "$m" ] && continue
		joined=$(event_time "$n" "\"type\":\"member-joined\",.*\"name\":\"$m\",")
		parts+=("saw $m join $(ms_between "$start" "$joined") after its start")
	done
	if [ "$n" != node1 ]; then
		got=$(event_time "$n" "$status_re")
		parts+=("got node1's status $(ms_between "$set_time" "$got") after node1 set it")
	fi
	line="$n (${peerid[$n]:0:16}…): ${parts[0]}"
	for p in "${parts[@]:1}"; do line+="; $p"; done
	log "$line"
done
log ""
for n in "${nodes[@]}"; do
	others=()
	for m in "${nodes[@]}"; do [ "$n" = "$m" ] || others+=("$m"); done
	log "result: $n saw ${others[*]}"
done
log "result: node2 got status {\"ready\":true} from node1"
log "result: node3 got status {\"ready\":true} from node1"
log "result: node1 saw node3 leave (left)"
log "result: node2 saw node3 leave (left)"
log "lan-demo: OK ($(elapsed))"
