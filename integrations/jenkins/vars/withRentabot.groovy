// withRentabot: runs its body while holding a rentabot resource, and always unlocks.
//
//     @Library('rentabot') _
//     node('lab') {
//         withRentabot(url: 'https://rentabot.example.com', tags: 'board,arm', ttl: 7200,
//                      credentialsId: 'rentabot-api-key', note: 'nightly flash test') {
//             sh './flash-and-test.sh "$RENTABOT_RESOURCE_ENDPOINT"'
//         }
//     }
//
// Parameters (give exactly one of tags, expr, name, id):
//   url            the service; default env.RENTABOT_URL
//   tags           'board,arm': a resource carrying every tag
//   expr           'linux && (x86 || arm) && !flaky': a label expression
//   name, id       that one resource
//   ttl            seconds the lock lasts (default 3600; at most the resource's
//                  max-lock-duration). The lock is not extended while the body runs:
//                  give the body's longest time. It is also what frees the resource if
//                  the agent dies.
//   wait           seconds to wait for a free resource (default 3600; 0: try once). By
//                  tags or expr the job queues a reservation and is served in turn.
//   note           why, shown on the dashboard
//   holder         who, default env.BUILD_URL
//   credentialsId  a "Secret text" credential holding the API key (role user or above),
//                  bound with withCredentials for the lock and unlock only
//
// The body sees RENTABOT_RESOURCE_ID, RENTABOT_RESOURCE_NAME, RENTABOT_RESOURCE_ENDPOINT,
// RENTABOT_LOCK_TOKEN, RENTABOT_FENCING_TOKEN and RENTABOT_LOCK_EXPIRES_AT in its
// environment, and the call returns the body's value. The unlock runs in `finally`:
// after the body succeeds, fails or is aborted. Must run inside `node`: the lock and
// unlock are `sh` steps running resources/org/rentabot/rentabot-lock.sh (bash, curl, jq;
// exit codes and messages documented there).
//
// Every parameter reaches the script through the environment, never through the text
// of a shell command, so no value can inject shell code.

def call(Map args = [:], Closure body) {
    def known = ['url', 'tags', 'expr', 'name', 'id', 'ttl', 'wait', 'note', 'holder', 'credentialsId']
    def unknown = args.keySet().findAll { !(it in known) }
    if (unknown) {
        error("withRentabot: unknown parameter(s) ${unknown.join(', ')}; it takes ${known.join(', ')}")
    }
    def url = args.url ?: env.RENTABOT_URL
    if (!url) {
        error('withRentabot: give url (or set RENTABOT_URL), e.g. url: \'https://rentabot.example.com\'')
    }
    def given = ['tags', 'expr', 'name', 'id'].findAll { args[it] != null && "${args[it]}" != '' }
    if (given.size() != 1) {
        error("withRentabot: give exactly one of tags, expr, name, id (got ${given ? given.join(', ') : 'none'})")
    }

    def script = "${pwd(tmp: true)}/rentabot-lock.sh"
    writeFile(file: script, text: libraryResource('org/rentabot/rentabot-lock.sh'))
    def settings = [
        "RENTABOT_URL=${url}",
        "RENTABOT_SCRIPT=${script}",
        "RENTABOT_LOCK_TAGS=${args.tags ?: ''}",
        "RENTABOT_LOCK_EXPR=${args.expr ?: ''}",
        "RENTABOT_LOCK_NAME=${args.name ?: ''}",
        "RENTABOT_LOCK_ID=${args.id ?: ''}",
        "RENTABOT_LOCK_TTL=${args.ttl ?: 3600}",
        "RENTABOT_LOCK_WAIT=${args.wait != null ? args.wait : 3600}",
        "RENTABOT_LOCK_NOTE=${args.note ?: ''}",
        "RENTABOT_LOCK_HOLDER=${args.holder ?: (env.BUILD_URL ?: '')}",
    ]

    // Lock: waits its turn; prints NAME=value lines (the token stays out of the log).
    def printed = ''
    withRentabotKey(args.credentialsId) {
        withEnv(settings) {
            printed = sh(script: 'bash "$RENTABOT_SCRIPT" lock', returnStdout: true)
        }
    }
    def lock = [:]
    printed.readLines().each { line ->
        def at = line.indexOf('=')
        if (at > 0) {
            lock[line.substring(0, at)] = line.substring(at + 1)
        }
    }
    if (!lock.RENTABOT_RESOURCE_ID || !lock.RENTABOT_LOCK_TOKEN) {
        error("withRentabot: the lock step printed no lock: ${printed}")
    }
    def held = lock.collect { k, v -> "${k}=${v}" }
    echo("withRentabot: holding resource ${lock.RENTABOT_RESOURCE_ID} (${lock.RENTABOT_RESOURCE_NAME})")
    try {
        return withEnv(held) {
            body()
        }
    } finally {
        withRentabotKey(args.credentialsId) {
            withEnv(settings + held) {
                sh(script: 'bash "$RENTABOT_SCRIPT" unlock')
            }
        }
    }
}

// Binds the API key as RENTABOT_API_KEY around `inner` when a credential is named.
private def withRentabotKey(String credentialsId, Closure inner) {
    if (!credentialsId) {
        return inner()
    }
    withCredentials([string(credentialsId: credentialsId, variable: 'RENTABOT_API_KEY')]) {
        inner()
    }
}
