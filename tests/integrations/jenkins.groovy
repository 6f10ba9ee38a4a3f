// A stand-in for Jenkins, enough to run integrations/jenkins/vars/withRentabot.groovy for
// real: its steps (sh, withEnv, withCredentials, writeFile, libraryResource, ...) do what
// Jenkins' do, against the real service, and the pipeline given as the second argument
// calls withRentabot as a Jenkinsfile would.
//
//   groovy jenkins.groovy LIBRARY_DIR PIPELINE_FILE
//
// Environment: whatever the pipeline's `env` should hold (RENTABOT_URL, BUILD_URL, ...);
// JENKINS_CREDENTIALS='id=secret' defines the one "Secret text" credential. A failing
// step throws, as in Jenkins: the run then ends with status 1 and the error on stderr.
// Each sh step's command line is printed to stderr as `+ sh: COMMAND`.

def library = new File(args[0])
def pipeline = new File(args[1])
def workspace = File.createTempDir('jenkins-ws', '')
def envStack = []                                  // withEnv / withCredentials, innermost last
def credentials = [:]
def given = System.getenv('JENKINS_CREDENTIALS')
if (given) {
    def at = given.indexOf('=')
    credentials[given.substring(0, at)] = given.substring(at + 1)
}
def env = new LinkedHashMap(System.getenv())

def binding = new Binding()
binding.setVariable('env', env)
binding.setVariable('echo', { String s -> System.err.println(s) })
binding.setVariable('error', { String s -> throw new RuntimeException(s) })
binding.setVariable('pwd', { Map m = [:] -> m.tmp ? "${workspace}@tmp".toString() : workspace.path })
binding.setVariable('libraryResource', { String path -> new File(library, "resources/${path}").text })
binding.setVariable('writeFile', { Map m ->
    def f = new File(m.file)
    f.parentFile.mkdirs()
    f.text = m.text
})
binding.setVariable('readFile', { String path -> new File(path).text })
binding.setVariable('withEnv', { List vars, Closure body ->
    envStack.addAll(vars.collect { it.toString() })
    try {
        return body()
    } finally {
        vars.size().times { envStack.remove(envStack.size() - 1) }
    }
})
binding.setVariable('string', { Map m -> m })
binding.setVariable('node', { String label = '', Closure body -> body() })
binding.setVariable('withCredentials', { List bindings, Closure body ->
    def vars = bindings.collect { b ->
        if (!credentials.containsKey(b.credentialsId)) {
            throw new RuntimeException("ERROR: Could not find credentials entry with ID '${b.credentialsId}'")
        }
        "${b.variable}=${credentials[b.credentialsId]}".toString()
    }
    binding.getVariable('withEnv').call(vars, body)
})
binding.setVariable('sh', { arg ->
    def m = arg instanceof Map ? arg : [script: arg]
    System.err.println("+ sh: ${m.script}")
    def pb = new ProcessBuilder(['sh', '-e', '-c', m.script.toString()])
    pb.directory(workspace)
    def penv = pb.environment()
    envStack.each { kv ->
        def at = kv.indexOf('=')
        penv.put(kv.substring(0, at), kv.substring(at + 1))
    }
    pb.redirectError(ProcessBuilder.Redirect.INHERIT)
    pb.redirectInput(ProcessBuilder.Redirect.INHERIT)
    if (!m.returnStdout) {
        pb.redirectOutput(ProcessBuilder.Redirect.INHERIT)
    }
    def p = pb.start()
    def out = m.returnStdout ? p.inputStream.text : null
    def status = p.waitFor()
    if (status != 0) {
        throw new RuntimeException("script returned exit code ${status}")
    }
    return out
})

def shell = new GroovyShell(binding)
def step = shell.parse(new File(library, 'vars/withRentabot.groovy'))
step.binding = binding
binding.setVariable('withRentabot', { Object[] a -> step.invokeMethod('call', a) })
try {
    shell.evaluate(pipeline)
} catch (Exception e) {
    System.err.println("PIPELINE FAILED: ${e.message}")
    System.exit(1)
}
System.err.println('PIPELINE SUCCEEDED')
