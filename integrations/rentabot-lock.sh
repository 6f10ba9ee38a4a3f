#!/usr/bin/env bash
# rentabot-lock.sh: lock a rentabot resource from a CI job, with nothing but bash (4.2 or
# later), curl and jq. The Jenkins shared library (integrations/jenkins) and the GitHub
# Action (integrations/github-action) both run this script; so can any other CI.
#
#   rentabot-lock.sh lock   SELECT [--ttl S] [--wait S] [--poll S] [--note T] [--holder H]
#                           [--output FILE]... [--format env|shell|json|none]
#   rentabot-lock.sh unlock [--id N] [--token T]
#   rentabot-lock.sh extend [--id N] [--token T] --ttl S
#   rentabot-lock.sh with   SELECT [--ttl S] [--wait S] [--poll S] [--note T] [--holder H]
#                           [--output FILE]... -- CMD [ARGS...]
#
# SELECT is one of --id N, --name NAME, --tags a,b (every tag), --expr 'linux && !flaky'.
#
# lock: waits its turn for at most --wait seconds (default 3600; 0: try once). By tags or
#   expression it queues a reservation (served in queue order the moment a match is
#   free: no polling) and cancels it if stopped while waiting; by id or name, which a
#   reservation cannot name, it retries every --poll seconds (default 5). Prints the
#   lock as NAME=value lines (--format env, the default; `shell`: `export NAME='value'`
#   lines for eval; `json`: one object; `none`: nothing), and appends the NAME=value
#   lines to each --output FILE (GitHub's $GITHUB_ENV and $GITHUB_OUTPUT; `with` too):
#     RENTABOT_RESOURCE_ID  RENTABOT_RESOURCE_NAME  RENTABOT_RESOURCE_ENDPOINT
#     RENTABOT_LOCK_TOKEN   RENTABOT_FENCING_TOKEN  RENTABOT_LOCK_EXPIRES_AT
# unlock, extend: the lock named by --id/--token, default $RENTABOT_RESOURCE_ID and
#   $RENTABOT_LOCK_TOKEN. unlock of a lock that already ended (expired, force-unlocked)
#   warns and succeeds: the resource is not held any more either way.
# with: lock, run CMD with the variables above exported, extend the lock by --ttl every
#   --ttl/3 seconds while CMD runs, always unlock (CMD fails, the script is stopped by
#   SIGTERM/SIGINT/SIGHUP: CMD gets SIGTERM, then the lock is released), and exit with
#   CMD's status. If the lock is lost (force-unlocked, or it reached the resource's
#   max-lock-duration and ran out), CMD is stopped with SIGTERM and the exit is 70.
#
# Every option also comes from the environment (an option wins): RENTABOT_URL (default
# http://127.0.0.1:8000), RENTABOT_API_KEY (sent as X-API-Key; never on a command line,
# so `ps` cannot show it), RENTABOT_LOCK_ID, _NAME, _TAGS, _EXPR, _TTL (default 3600),
# _WAIT, _NOTE, _HOLDER (default: the job's URL from BUILD_URL or GitHub's variables),
# RENTABOT_POLL. An empty variable counts as unset.
#
# Exit status: 0 done; 64 bad usage; 65 the service refused the request (no such
# resource, bad ttl, unsatisfiable: the message says what to fix); 69 still busy when
# the wait ran out; 70 the lock was lost while CMD ran; 75 the service could not be
# reached or failed (5xx); 77 the API key was refused (401) or its role may not lock
# (403 forbidden). `with` otherwise exits with CMD's status. Messages go to stderr,
# prefixed `rentabot-lock:`.
set -euo pipefail

readonly PROG=rentabot-lock
readonly EX_USAGE=64 EX_REFUSED=65 EX_BUSY=69 EX_LOST=70 EX_UNREACHABLE=75 EX_AUTH=77
# The longest a single request may take; a long-poll adds its own wait to it.
readonly REQUEST_TIMEOUT=30
# Seconds one long-poll of a waiting reservation may last (the server allows 300).
readonly LONG_POLL=60

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    local code=$1
    shift
    say "$*"
    exit "$code"
}
usage() { die "$EX_USAGE" "$* (see the comment at the top of $0 for usage)"; }
# Sets NOW to the time in seconds.
now() { printf -v NOW '%(%s)T' -1; }

# No `$(...)` in this script once it watches signals: bash 5.2 (Debian 12's 5.2.15) may
# run a trap while it parses a command substitution, and then fails to parse the trap
# ("unexpected EOF while looking for matching `)'"): stopped at that moment, the script
# would exit 2 without withdrawing its reservation or releasing its lock. Output is read
# through files in WORK instead (a directory of its own, made before any trap is set).
WORK=
# Makes WORK (mode 700) and removes it at exit (`watch_signals` does both: it replaces
# this EXIT trap). mkdir, not mktemp: mktemp's name would come through a `$(...)`.
make_work() {
    local try
    for try in 1 2 3 4 5 6 7 8; do
        WORK=${TMPDIR:-/tmp}/rentabot-lock.$$.$RANDOM$try
        if mkdir -m 700 "$WORK" 2> /dev/null; then
            trap 'rm -rf "$WORK"' EXIT
            return 0
        fi
    done
    die "$EX_UNREACHABLE" "cannot make a directory in ${TMPDIR:-/tmp} for curl's answers"
}
# capture VAR CMD [ARGS...]: VAR=$(CMD ARGS...), through a file; CMD's status.
capture() {
    # Named here: in a redirection, $BASHPID would be the forked command's.
    local _var=$1 _status=0 _file=$WORK/capture.$BASHPID
    shift
    "$@" > "$_file" || _status=$?
    read_file "$_var" "$_file"
    return "$_status"
}
# read_file VAR FILE: VAR=$(cat FILE), trailing newlines dropped as `$(...)` drops them.
read_file() {
    local _text=
    IFS= read -r -d '' _text < "$2" || true
    while [[ $_text == *$'\n' ]]; do _text=${_text%$'\n'}; done
    printf -v "$1" '%s' "$_text"
}

CURL_PID=
URL=${RENTABOT_URL:-http://127.0.0.1:8000}
URL=${URL%/}
API="$URL/api/v1"

# cfg_quote VAR STRING: STRING as a double-quoted value of curl's config syntax.
cfg_quote() {
    local s=${2//\\/\\\\}
    printf -v "$1" '"%s"' "${s//\"/\\\"}"
}

# api METHOD PATH [JSON [TIMEOUT]]: one request. Sets STATUS (000 when there was no
# answer), BODY, and CURL_ERROR. The key, the lock token (SEND_TOKEN, as X-Lock-Token)
# and the body go through curl's config on stdin, not its arguments.
api() {
    local method=$1 path=$2 data=${3-} timeout=${4:-$REQUEST_TIMEOUT} cfg err out quoted
    cfg_quote quoted "$API$path"
    cfg="url = $quoted"$'\n'"request = \"$method\""$'\n'
    if [ -n "${RENTABOT_API_KEY-}" ]; then
        cfg_quote quoted "X-API-Key: $RENTABOT_API_KEY"
        cfg+="header = $quoted"$'\n'
    fi
    if [ -n "${SEND_TOKEN-}" ]; then
        cfg_quote quoted "X-Lock-Token: $SEND_TOKEN"
        cfg+="header = $quoted"$'\n'
    fi
    if [ -n "$data" ]; then
        cfg+='header = "Content-Type: application/json"'$'\n'
        cfg_quote quoted "$data"
        cfg+="data-binary = $quoted"$'\n'
    fi
    err=$WORK/err.$BASHPID
    out=$WORK/out.$BASHPID
    # In the background, and waited for: a signal's trap then runs at once, not after a
    # long-poll of up to a minute.
    curl -sS --config - --max-time "$timeout" --connect-timeout 10 \
        -w '\n%{http_code}' <<< "$cfg" > "$out" 2> "$err" &
    CURL_PID=$!
    wait "$CURL_PID" || true
    CURL_PID=
    read_file BODY "$out"
    read_file CURL_ERROR "$err"
    rm -f "$err" "$out"
    STATUS=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
    [[ $STATUS =~ ^[0-9]{3}$ ]] || STATUS=000
}

# Sets WHY to the error in BODY, as "message (status code)".
explain() {
    local message
    capture message jq -r '.message // empty' <<< "$BODY" 2> /dev/null || true
    code
    printf -v WHY '%s (%s%s)' "${message:-${BODY:0:200}}" "$STATUS" "${CODE:+ $CODE}"
}
# Sets CODE to the error code in BODY (empty if none).
code() { capture CODE jq -r '.code // empty' <<< "$BODY" 2> /dev/null || true; }

# Exits with the right status for an answer that is not a success and not "busy".
fail() {
    local what=$1
    explain
    case $STATUS in
        000) die "$EX_UNREACHABLE" "$what: cannot reach rentabot at $URL: ${CURL_ERROR:-no answer}" ;;
        401) die "$EX_AUTH" "$what: the API key was refused: $WHY; set RENTABOT_API_KEY to a valid key" ;;
        403) [ "$CODE" = forbidden ] && die "$EX_AUTH" "$what: this key's role may not do that: $WHY" ;;
        5??) die "$EX_UNREACHABLE" "$what: rentabot failed: $WHY" ;;
    esac
    die "$EX_REFUSED" "$what: refused: $WHY"
}

# True for an answer that says "not now": locked, held for a reservation, unavailable.
busy() {
    case $STATUS in
        403) code && [ "$CODE" != forbidden ] && [ "$CODE" != not_owner ] && [ "$CODE" != origin_not_allowed ] ;;
        409) true ;;
        *) false ;;
    esac
}

# Options, from the environment first.
ID=${RENTABOT_LOCK_ID-} NAME=${RENTABOT_LOCK_NAME-} TAGS=${RENTABOT_LOCK_TAGS-}
EXPR=${RENTABOT_LOCK_EXPR-} TTL=${RENTABOT_LOCK_TTL:-3600} WAIT=${RENTABOT_LOCK_WAIT:-3600}
NOTE=${RENTABOT_LOCK_NOTE-} HOLDER=${RENTABOT_LOCK_HOLDER-} POLL=${RENTABOT_POLL:-5}
TOKEN=${RENTABOT_LOCK_TOKEN-} RESOURCE=${RENTABOT_RESOURCE_ID-}
OUTPUTS=() FORMAT=env
CMD=()

parse() {
    local sub=$1
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --) [ "$sub" = with ] || usage "-- is only for 'with'"; shift; CMD=("$@"); return ;;
            --id | --name | --tags | --expr | --ttl | --wait | --note | --holder | --poll | --token | --output | --format)
                [ $# -ge 2 ] || usage "$1 needs a value"
                case $1 in
                    --id) if [ "$sub" = lock ] || [ "$sub" = with ]; then ID=$2; else RESOURCE=$2; fi ;;
                    --name) NAME=$2 ;;
                    --tags) TAGS=$2 ;;
                    --expr) EXPR=$2 ;;
                    --ttl) TTL=$2 ;;
                    --wait) WAIT=$2 ;;
                    --note) NOTE=$2 ;;
                    --holder) HOLDER=$2 ;;
                    --poll) POLL=$2 ;;
                    --token) TOKEN=$2 ;;
                    --output) OUTPUTS+=("$2") ;;
                    --format) FORMAT=$2 ;;
                esac
                shift 2
                ;;
            *) usage "unknown argument '$1' for '$sub'" ;;
        esac
    done
    [ "$sub" != with ] || usage "'with' needs -- and a command to run"
}

number() { [[ $2 =~ ^[0-9]+$ ]] || usage "$1 must be a whole number of seconds, got '$2'"; }

check_lock_options() {
    local given=0
    for v in "$ID" "$NAME" "$TAGS" "$EXPR"; do [ -z "$v" ] || given=$((given + 1)); done
    [ "$given" -eq 1 ] || usage "give exactly one of --id, --name, --tags, --expr (got $given)"
    [ -z "$ID" ] || [[ $ID =~ ^[0-9]+$ ]] || usage "--id must be a resource number, got '$ID'"
    number --ttl "$TTL"
    [ "$TTL" -ge 1 ] || usage "--ttl must be at least 1 second"
    number --wait "$WAIT"
    [[ $POLL =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage "--poll must be a number of seconds, got '$POLL'"
    case $FORMAT in env | shell | json | none) ;; *) usage "--format must be env, shell, json or none" ;; esac
    if [ -z "$HOLDER" ]; then
        if [ -n "${BUILD_URL-}" ]; then
            HOLDER=$BUILD_URL
        elif [ -n "${GITHUB_RUN_ID-}" ]; then
            HOLDER="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY-}/actions/runs/$GITHUB_RUN_ID"
        else
            local user=${USER-} host=
            [ -n "$user" ] || capture user id -un 2> /dev/null || true
            capture host hostname 2> /dev/null || true
            HOLDER="${user:-ci}@${host:-localhost}"
        fi
    fi
    HOLDER=${HOLDER:0:256}
}

# The lock's JSON body: ttl, holder, note.
terms() { jq -nc --argjson ttl "$TTL" --arg holder "$HOLDER" --arg note "$NOTE" \
    '{ttl: $ttl, holder: $holder} + (if $note == "" then {} else {note: $note} end)'; }

# One direct lock attempt; sets GOT_ID and TOKEN on success.
try_lock() {
    local path value body
    if [ -n "$ID" ]; then
        path="/resources/$ID/lock"
    else
        if [ -n "$NAME" ]; then
            path="/resources/lock?name="
            value=$NAME
        elif [ -n "$TAGS" ]; then
            path="/resources/lock?tag="
            value=$TAGS
        else
            path="/resources/lock?expr="
            value=$EXPR
        fi
        # shellcheck disable=SC2016 # jq's $v, not the shell's
        capture value jq -rn --arg v "$value" '$v|@uri'
        path+=$value
    fi
    capture body terms
    api POST "$path" "$body"
    if [ "$STATUS" = 200 ]; then
        capture GOT_ID jq -r .resource.id <<< "$BODY"
        capture TOKEN jq -r '."lock-token"' <<< "$BODY"
        return 0
    fi
    busy || fail "lock"
    return 1
}

# By id or name: retry every POLL seconds until the wait runs out.
lock_by_polling() {
    local deadline said=
    now
    deadline=$((NOW + WAIT))
    until try_lock; do
        explain
        now
        [ "$NOW" -lt "$deadline" ] || die "$EX_BUSY" "still busy after waiting ${WAIT}s: $WHY"
        [ -n "$said" ] || say "busy: $WHY; retrying every ${POLL}s for up to ${WAIT}s"
        said=1
        pause "$POLL"
    done
}

# pause SECONDS: waits with `read -t` on a FIFO nobody writes to, rather than a `sleep`
# child: a signal's trap runs at once, and no process is left behind to hold a caller's
# pipe open.
PAUSE_OPEN=
pause() {
    if [ -z "$PAUSE_OPEN" ]; then
        mkfifo "$WORK/pause.$BASHPID"
        exec 9<> "$WORK/pause.$BASHPID"
        rm -f "$WORK/pause.$BASHPID"
        PAUSE_OPEN=1
    fi
    read -r -t "$1" -u 9 _ || true
}

RID=
# Stopped while a reservation waits: cancel it; if it was served meanwhile, give back
# what it got.
abandon_reservation() {
    [ -z "$CURL_PID" ] || kill "$CURL_PID" 2> /dev/null || true
    [ -n "$RID" ] || return 0
    local rid=$RID
    RID=
    api DELETE "/reservations/$rid"
    if [ "$STATUS" = 409 ]; then
        api GET "/reservations/$rid"
        local t tokens=()
        capture t jq -r '.lock_tokens[]? // empty' <<< "$BODY" 2> /dev/null || true
        read -r -d '' -a tokens <<< "$t" || true
        for t in ${tokens[@]+"${tokens[@]}"}; do
            api POST /resources/unlock-batch "{\"lock_tokens\": [\"$t\"]}"
        done
    fi
    say "stopped while waiting: reservation $rid withdrawn"
}

# By tags or expression: a reservation that locks for us once served (auto_claim).
lock_by_reservation() {
    local body status position waiting
    capture body terms
    # shellcheck disable=SC2016 # jq's variables, not the shell's
    capture body jq -c --arg tags "$TAGS" --arg expr "$EXPR" --argjson wait "$WAIT" \
        '. + {max_wait_time: $wait, auto_claim: true}
           + (if $tags != "" then {tags: $tags} else {expr: $expr} end)' <<< "$body"
    api POST /reservations "$body"
    [ "$STATUS" = 201 ] || fail "reserve"
    capture RID jq -r .reservation_id <<< "$BODY"
    capture status jq -r .status <<< "$BODY"
    if [ "$status" = pending ]; then
        capture position jq -r '.position_in_queue // "?"' <<< "$BODY"
        capture waiting jq -r \
            '.waiting_for | "\(.matching) match, \(.locked) locked, \(.held_for_earlier) held for earlier requests, \(.unavailable) unavailable"' \
            <<< "$BODY" 2> /dev/null || waiting=busy
        say "waiting in the queue (reservation $RID, position $position, up to ${WAIT}s): $waiting"
    fi
    while [ "$status" = pending ]; do
        # Answers as soon as the status changes, or after LONG_POLL seconds.
        api GET "/reservations/$RID?wait=$LONG_POLL&status=pending" "" $((REQUEST_TIMEOUT + LONG_POLL))
        case $STATUS in
            200) capture status jq -r .status <<< "$BODY" ;;
            404)
                local ended
                capture ended jq -r '.ended // empty' <<< "$BODY" 2> /dev/null || true
                RID=
                [ "$ended" = expired ] && die "$EX_BUSY" "still busy after waiting ${WAIT}s in the queue (reservation expired)"
                explain
                die "$EX_REFUSED" "the reservation ended while waiting (${ended:-unknown}): $WHY"
                ;;
            *) fail "wait for the reservation" ;;
        esac
    done
    RID=
    capture GOT_ID jq -r '.resource_ids[0]' <<< "$BODY"
    capture TOKEN jq -r '.lock_tokens[0]' <<< "$BODY"
}

# Locks as the options say and sets the RENTABOT_* variables.
do_lock() {
    check_lock_options
    GOT_ID=
    if [ "$WAIT" -eq 0 ]; then
        try_lock || {
            explain
            die "$EX_BUSY" "busy (--wait 0, not waiting): $WHY"
        }
    elif [ -n "$ID" ] || [ -n "$NAME" ]; then
        lock_by_polling
    else
        lock_by_reservation
    fi
    # Ours from here: a signal or an error before the caller has it releases it.
    RESOURCE=$GOT_ID
    HELD=1
    now
    LOCKED_AT=$NOW
    api GET "/resources/$GOT_ID"
    if [ "$STATUS" != 200 ]; then
        explain
        say "locked resource $GOT_ID, but could not read it: $WHY"
        BODY='{"resource": {}}'
    fi
    RENTABOT_RESOURCE_ID=$GOT_ID
    RENTABOT_LOCK_TOKEN=$TOKEN
    capture RENTABOT_RESOURCE_NAME jq -r '.resource.name // ""' <<< "$BODY"
    capture RENTABOT_RESOURCE_ENDPOINT jq -r '.resource.endpoint // ""' <<< "$BODY"
    capture RENTABOT_FENCING_TOKEN jq -r '.resource."fencing-token" // ""' <<< "$BODY"
    capture RENTABOT_LOCK_EXPIRES_AT jq -r '.resource."lock-expires-at" // ""' <<< "$BODY"
    export RENTABOT_RESOURCE_ID RENTABOT_LOCK_TOKEN RENTABOT_RESOURCE_NAME \
        RENTABOT_RESOURCE_ENDPOINT RENTABOT_FENCING_TOKEN RENTABOT_LOCK_EXPIRES_AT
    say "locked resource $GOT_ID ($RENTABOT_RESOURCE_NAME) for ${TTL}s, fencing token $RENTABOT_FENCING_TOKEN"
    # On GitHub Actions, keep the token out of the job's log.
    [ "${GITHUB_ACTIONS-}" != true ] || echo "::add-mask::$RENTABOT_LOCK_TOKEN"
}

readonly VARS=(RENTABOT_RESOURCE_ID RENTABOT_RESOURCE_NAME RENTABOT_RESOURCE_ENDPOINT
    RENTABOT_LOCK_TOKEN RENTABOT_FENCING_TOKEN RENTABOT_LOCK_EXPIRES_AT)

print_lock() {
    local v
    case $FORMAT in
        env) for v in "${VARS[@]}"; do printf '%s=%s\n' "$v" "${!v}"; done ;;
        shell) for v in "${VARS[@]}"; do printf 'export %s=%q\n' "$v" "${!v}"; done ;;
        json) jq -n '$ENV | with_entries(select(.key | IN($ARGS.positional[])))' --args "${VARS[@]}" ;;
        none) ;;
    esac
    write_outputs
}

# Appends the lock's NAME=value lines to every --output file.
write_outputs() {
    local file v
    for file in ${OUTPUTS[@]+"${OUTPUTS[@]}"}; do
        for v in "${VARS[@]}"; do printf '%s=%s\n' "$v" "${!v}"; done >> "$file"
    done
}

need_lock() {
    [ -n "$RESOURCE" ] || usage "which lock? give --id or set RENTABOT_RESOURCE_ID"
    [[ $RESOURCE =~ ^[0-9]+$ ]] || usage "--id must be a resource number, got '$RESOURCE'"
    [ -n "$TOKEN" ] || usage "which lock? give --token or set RENTABOT_LOCK_TOKEN"
}

# Unlock, retrying a failed connection, a 5xx or a 429 a few times (1, 2, 4 s apart).
do_unlock() {
    need_lock
    local attempt delay=1
    for attempt in 1 2 3 4; do
        SEND_TOKEN=$TOKEN api POST "/resources/$RESOURCE/unlock"
        case $STATUS in
            200)
                say "unlocked resource $RESOURCE"
                return 0
                ;;
            000 | 5?? | 429)
                if [ "$attempt" -lt 4 ]; then
                    explain
                    say "unlock: $WHY, retrying in ${delay}s"
                    pause "$delay"
                    delay=$((delay * 2))
                fi
                ;;
            403)
                code
                case $CODE in
                    not_locked | invalid_lock_token)
                        explain
                        say "resource $RESOURCE: the lock had already ended (expired or force-unlocked): $WHY"
                        return 0
                        ;;
                esac
                fail "unlock"
                ;;
            *) fail "unlock" ;;
        esac
    done
    fail "unlock"
}

do_extend() {
    need_lock
    number --ttl "$TTL"
    SEND_TOKEN=$TOKEN api POST "/resources/$RESOURCE/extend?additional-ttl=$TTL"
    [ "$STATUS" = 200 ] || fail "extend"
    local ends
    capture ends jq -r '"ends at \(."new-expires-at")"' <<< "$BODY"
    say "extended resource $RESOURCE: $ends"
}

# Runs in the background while CMD runs: extends the lock every TTL/3 seconds (at
# least 1). A failed connection or a 5xx is retried at the next turn while the lock
# lasts; a lock that cannot be extended any further (max-lock-duration) is kept until
# it runs out. When the lock is lost, stops CMD (SIGTERM) and exits with EX_LOST.
keep_extending() {
    local child=$1 every=$((TTL / 3)) expires=$((LOCKED_AT + TTL)) started
    [ "$every" -ge 1 ] || every=1
    trap 'exit 0' TERM
    while true; do
        pause "$every"
        # CMD is gone (and this script with it, or it would have stopped us): done.
        kill -0 "$child" 2> /dev/null || exit 0
        now
        started=$NOW
        SEND_TOKEN=$TOKEN api POST "/resources/$RESOURCE/extend?additional-ttl=$TTL"
        if [ "$STATUS" = 200 ]; then
            expires=$((started + TTL))
            continue
        fi
        explain
        now
        if [ "$CODE" = total_above_max ]; then
            say "cannot extend any more (the resource's max-lock-duration): the lock ends in $((expires - NOW))s"
            pause $((expires - NOW > 0 ? expires - NOW : 1))
        elif [[ $STATUS =~ ^(000|5..|429)$ ]] && [ "$NOW" -lt "$expires" ]; then
            say "extend: $WHY, retrying in ${every}s"
            continue
        fi
        # Ignore the TERM that CMD's end will bring: the verdict is EX_LOST.
        trap '' TERM
        say "the lock on resource $RESOURCE is lost ($WHY): stopping the command"
        kill -TERM "$child" 2> /dev/null || true
        exit "$EX_LOST"
    done
}

# Signals and exits, for lock and with. Before CMD runs, a signal ends the script: a
# waiting reservation is withdrawn, a lock already taken released (on EXIT). While CMD
# runs, it is passed on to CMD as SIGTERM (a background command of a non-interactive
# shell ignores SIGINT) and the script goes on to wait for CMD.
HELD='' CHILD='' INTERRUPTED='' SIGNALLED='' STARTING=''
# (No `return` in here: from a trap's function, under set -e, bash ends the script.)
on_signal() {
    SIGNALLED=1
    if [ -n "$CHILD" ]; then
        INTERRUPTED=1
        kill -TERM "$CHILD" 2> /dev/null || true
    elif [ -n "$STARTING" ]; then
        # CMD is being started and its pid is not known yet (a trap may run between
        # `CMD &` and `CHILD=$!`): do_with passes the signal on once it is.
        :
    else
        abandon_reservation
        exit "$1"
    fi
}
release_on_exit() {
    # In a subshell: a failed unlock warns, and the exit status stays CMD's.
    if [ -n "$HELD" ]; then
        (do_unlock) || say "resource $RESOURCE stays locked until its lock expires (${RENTABOT_LOCK_EXPIRES_AT:-after its ttl})"
    fi
    rm -rf "$WORK"
}

do_with() {
    do_lock
    write_outputs
    local keeper status=0 again keeper_status=0
    # Explicit stdin: `&` alone would give CMD /dev/null.
    STARTING=1
    "${CMD[@]}" 0<&0 9<&- &
    CHILD=$!
    # A signal that came while CMD was being started had no pid to go to: without
    # this, the script would exit and leave CMD running (holding the step's output).
    [ -z "$SIGNALLED" ] || kill -TERM "$CHILD" 2> /dev/null || true
    keep_extending "$CHILD" 0< /dev/null &
    keeper=$!
    # A trapped signal makes `wait` return early (128 + the signal): wait again, for
    # CMD's own status. A CMD that ended before the trap ran has been waited for
    # already: the second wait answers 127, and the first status stands.
    wait "$CHILD" || status=$?
    while [ -n "$INTERRUPTED" ]; do
        INTERRUPTED=
        again=0
        wait "$CHILD" 2> /dev/null || again=$?
        [ "$again" = 127 ] || status=$again
    done
    kill -TERM "$keeper" 2> /dev/null || true
    wait "$keeper" || keeper_status=$?
    if [ "$keeper_status" = "$EX_LOST" ]; then
        HELD=
        exit "$EX_LOST"
    fi
    [ -z "$SIGNALLED" ] || say "stopped by a signal: the command was stopped, releasing the lock"
    exit "$status"
}

watch_signals() {
    trap 'on_signal 143' TERM
    trap 'on_signal 130' INT
    trap 'on_signal 129' HUP
    trap release_on_exit EXIT
}

main() {
    [ $# -ge 1 ] || usage "give a subcommand: lock, unlock, extend or with"
    local sub=$1
    shift
    make_work
    case $sub in
        lock)
            parse lock "$@"
            watch_signals
            do_lock
            print_lock
            HELD= # the caller's now
            ;;
        unlock)
            parse unlock "$@"
            do_unlock
            ;;
        extend)
            parse extend "$@"
            do_extend
            ;;
        with)
            parse with "$@"
            [ ${#CMD[@]} -ge 1 ] || usage "'with' needs a command after --"
            watch_signals
            do_with
            ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
        *) usage "unknown subcommand '$sub': lock, unlock, extend or with" ;;
    esac
}

main "$@"
