//! The Helm chart `helm/rentabot` (README § Kubernetes (Helm)), rendered offline through
//! the Helm library of PyPI's `helm-python-sdk` after `helm lint --strict`: the
//! StatefulSet runs one non-root pod with its state on a claim, takes its descriptor
//! and auth config from a ConfigMap and a Secret, sets every setting of `rentabot serve`
//! only through values the schema knows, and rolls when its inline config changes;
//! values.schema.json and the templates refuse what would not work. With the state on
//! PostgreSQL (values persistence.postgres) it renders an active/standby pair instead:
//! a Deployment of `replicas` pods with no claim, a PodDisruptionBudget and an
//! anti-affinity (docs/OPERATIONS.md § High availability on PostgreSQL).
//!
//! Without the library (RENTABOT_HELM_PYTHON names a Python that has it; `.ci/run`
//! makes one) the tests say so loudly and pass. tests/helm.sh validates the same
//! renders against Kubernetes' schemas and runs the pod with podman.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use clap::CommandFactory;
use serde_json::{Value, json};

/// What the chart renders for a set of values.
pub(crate) struct Rendered {
    /// Template path (`rentabot/templates/statefulset.yaml`) -> its manifest; templates
    /// that render nothing are left out.
    pub manifests: BTreeMap<String, Value>,
    /// What `helm install` prints (templates/NOTES.txt).
    pub notes: String,
}

impl Rendered {
    /// The manifest of `template` (`statefulset` for templates/statefulset.yaml).
    fn get(&self, template: &str) -> &Value {
        let key = format!("rentabot/templates/{template}.yaml");
        self.manifests
            .get(&key)
            .unwrap_or_else(|| panic!("{key} renders nothing; rendered: {:?}", self.names()))
    }

    fn has(&self, template: &str) -> bool {
        self.manifests
            .contains_key(&format!("rentabot/templates/{template}.yaml"))
    }

    fn names(&self) -> Vec<&str> {
        self.manifests
            .keys()
            .map(|k| {
                k.trim_start_matches("rentabot/templates/")
                    .trim_end_matches(".yaml")
            })
            .collect()
    }

    /// The workload: the StatefulSet (SQLite) or the Deployment (PostgreSQL), never both.
    fn workload(&self) -> &Value {
        match (self.has("statefulset"), self.has("deployment")) {
            (true, false) => self.get("statefulset"),
            (false, true) => self.get("deployment"),
            _ => panic!(
                "one StatefulSet or one Deployment; rendered: {:?}",
                self.names()
            ),
        }
    }

    fn pod(&self) -> &Value {
        &self.workload()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod()["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{containers:?}");
        &containers[0]
    }

    /// The container's environment: name -> value (each name once; "" for a value
    /// from elsewhere: env_var has it whole).
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for var in self.container()["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap().to_owned();
            let value = var["value"].as_str().unwrap_or_default().to_owned();
            assert!(
                env.insert(name.clone(), value).is_none(),
                "{name} is set twice"
            );
        }
        env
    }

    /// The container's EnvVar `name`, whole (value or valueFrom).
    fn env_var(&self, name: &str) -> &Value {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    }

    fn has_volume(&self, name: &str) -> bool {
        self.pod()["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == name)
    }

    fn volume(&self, name: &str) -> &Value {
        self.pod()["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {}", self.pod()["volumes"]))
    }

    fn mount(&self, name: &str) -> &Value {
        self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"))
    }

    fn has_mount(&self, name: &str) -> bool {
        self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == name)
    }

    fn annotation(&self, name: &str) -> &str {
        self.workload()["spec"]["template"]["metadata"]["annotations"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no pod annotation {name}"))
    }
}

const SCRIPT: &str = r#"
import json, sys
from helm_python.chart import Chart, lint
mode, chart, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if mode == "render":
    linted = lint(chart, values, strict=True, kube_version="v1.30.0", namespace="lab")
    with Chart.load(chart) as c:
        manifests = c.render(values, name="demo", namespace="lab", is_install=True)
    print(json.dumps({"lint": linted, "manifests": manifests}, default=str))
elif mode == "refuse":
    try:
        with Chart.load(chart) as c:
            c.render(values, name="demo", namespace="lab")
        print(json.dumps({"error": None}))
    except Exception as e:
        print(json.dumps({"error": str(e)}))
else:  # the templates' own checks: a copy of the chart without its schema, as
    # `helm template --skip-schema-validation` (lint turns `fail` into a log line)
    import os, shutil, tempfile
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(chart, os.path.join(tmp, "rentabot"))
        os.remove(os.path.join(copy, "values.schema.json"))
        try:
            with Chart.load(copy) as c:
                c.render(values, name="demo", namespace="lab")
            print(json.dumps({"error": None}))
        except Exception as e:
            print(json.dumps({"error": str(e)}))
"#;

/// Runs SCRIPT in `mode` on the chart with `values`; `None` (said loudly) without the
/// library.
fn run_helm(test: &str, mode: &str, values: &Value) -> Option<Value> {
    let python = std::env::var("RENTABOT_HELM_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_sdk = Command::new(&python)
        .args(["-c", "import helm_python.chart"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_sdk {
        eprintln!(
            "\n\n!!!! SKIPPED {test}: {python} cannot import helm_python \
             (pip install helm-python-sdk==0.2.2; RENTABOT_HELM_PYTHON names the python) !!!!\n\n"
        );
        return None;
    }
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/rentabot");
    let out = Command::new(&python)
        .args(["-c", SCRIPT, mode])
        .arg(&chart)
        .arg(values.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "helm ({mode}) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

/// Renders the chart with `values` (as `helm install demo -n lab`) after `helm lint
/// --strict` finds nothing; `None` without the library.
pub(crate) fn render(test: &str, values: &Value) -> Option<Rendered> {
    let rendered = run_helm(test, "render", values)?;
    assert_eq!(
        rendered["lint"]["errors"],
        json!([]),
        "helm lint --strict: {}",
        rendered["lint"]
    );
    let mut manifests = BTreeMap::new();
    let mut notes = String::new();
    for (template, text) in rendered["manifests"].as_object().unwrap() {
        let text = text.as_str().unwrap();
        if template.ends_with("/NOTES.txt") {
            notes = text.to_owned();
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        let manifest: Value = serde_yaml_ng::from_str(text)
            .unwrap_or_else(|e| panic!("{template} is not YAML ({e}):\n{text}"));
        manifests.insert(template.clone(), manifest);
    }
    Some(Rendered { manifests, notes })
}

/// Why the chart refuses `values` (schema or template); panics if it renders them.
fn refusal(test: &str, values: &Value) -> Option<String> {
    let out = run_helm(test, "refuse", values)?;
    Some(
        out["error"]
            .as_str()
            .unwrap_or_else(|| panic!("the chart renders {values}"))
            .to_owned(),
    )
}

/// Why the templates alone (schema skipped) refuse `values`.
fn template_refusal(test: &str, values: &Value) -> Option<String> {
    let out = run_helm(test, "templates", values)?;
    Some(
        out["error"]
            .as_str()
            .unwrap_or_else(|| panic!("the templates render {values}"))
            .to_owned(),
    )
}

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/rentabot/values.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Standard base64 (Secret data), without a dependency for it.
fn base64_decode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn the_default_release_runs_one_locked_down_pod_with_its_state_on_a_claim() {
    let test = "the_default_release_runs_one_locked_down_pod_with_its_state_on_a_claim";
    let Some(r) = render(test, &json!({})) else {
        return;
    };
    assert_eq!(
        r.names(),
        [
            "grafana-dashboard",
            "service",
            "serviceaccount",
            "statefulset"
        ]
    );
    let sts = r.get("statefulset");
    // SQLite, as releases installed before the PostgreSQL mode have it: the same kind
    // and name (a Deployment, a PodDisruptionBudget or an anti-affinity is PostgreSQL's).
    assert_eq!(sts["apiVersion"], "apps/v1");
    assert_eq!(sts["kind"], "StatefulSet");
    assert_eq!(sts["metadata"]["name"], "demo-rentabot");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate"})
    );
    assert!(!r.has("deployment") && !r.has("poddisruptionbudget"));
    assert!(!r.has("postgres-secret"));
    assert!(r.pod().get("affinity").is_none(), "{}", r.pod());
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["metadata"]["namespace"], "lab");

    // The state: /data on the claim `data`, the SQLite file on it.
    let claims = sts["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["metadata"]["name"], "data");
    assert_eq!(claims[0]["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(r.mount("data")["mountPath"], "/data");
    let env = r.env();
    assert_eq!(env["RENTABOT_PERSIST"], "sqlite:////data/rentabot.db");
    assert_eq!(env["RENTABOT_HOST"], "0.0.0.0");
    assert_eq!(env["RENTABOT_PORT"], "8000");
    assert!(!env.contains_key("RENTABOT_CONFIG"), "{env:?}");
    assert!(!env.contains_key("RENTABOT_AUTH_CONFIG"), "{env:?}");

    // Locked down: non-root, read-only root, nothing to escalate to.
    let pod = r.pod();
    let container = r.container();
    for ctx in [&pod["securityContext"], &container["securityContext"]] {
        assert_eq!(ctx["runAsNonRoot"], true, "{ctx}");
        assert_eq!(ctx["runAsUser"], 65532, "{ctx}");
        assert_eq!(ctx["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");
    }
    let ctx = &container["securityContext"];
    assert_eq!(ctx["readOnlyRootFilesystem"], true);
    assert_eq!(ctx["allowPrivilegeEscalation"], false);
    assert_eq!(ctx["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        pod["securityContext"]["fsGroup"], 65532,
        "the claim is writable"
    );
    assert_eq!(r.mount("tmp")["mountPath"], "/tmp");
    assert!(r.volume("tmp")["emptyDir"].is_object());
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        pod["enableServiceLinks"], false,
        "a Service named rentabot would set RENTABOT_PORT=tcp://..."
    );

    // The image, the port, the probes, the resources.
    assert_eq!(
        container["image"],
        format!("localhost/rentabot:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        container["ports"],
        json!([{"name": "http", "containerPort": 8000, "protocol": "TCP"}])
    );
    for (probe, path) in [
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/readiness"),
    ] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({"path": path, "port": "http"}),
            "{probe}"
        );
    }
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The Service reaches the pod.
    let service = r.get("service");
    assert_eq!(sts["spec"]["serviceName"], service["metadata"]["name"]);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}])
    );
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    assert_eq!(
        sts["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(
        pod["serviceAccountName"],
        r.get("serviceaccount")["metadata"]["name"]
    );

    // The notes say what is missing.
    assert!(r.notes.contains("WARNING: no auth config"), "{}", r.notes);
    assert!(r.notes.contains("no descriptor"), "{}", r.notes);
    assert!(r.notes.contains("data-demo-rentabot-0"), "{}", r.notes);
}

/// Kubernetes waits terminationGracePeriodSeconds before SIGKILL: it must outlast the
/// grace rentabot gives requests in flight, in the default and in every value the
/// schema accepts.
#[test]
fn the_grace_period_outlasts_the_services_shutdown_grace() {
    let grace = rentabot::app::SHUTDOWN_GRACE_SECS;
    let least = schema()["properties"]["terminationGracePeriodSeconds"]["minimum"]
        .as_u64()
        .unwrap();
    assert!(
        least > grace,
        "the schema allows {least} s, rentabot takes {grace} s"
    );
    let Some(r) = render(
        "the_grace_period_outlasts_the_services_shutdown_grace",
        &json!({}),
    ) else {
        return;
    };
    let chosen = r.pod()["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(chosen > grace, "{chosen} s");
    let Some(why) = refusal(
        "the_grace_period_outlasts_the_services_shutdown_grace",
        &json!({"terminationGracePeriodSeconds": grace}),
    ) else {
        return;
    };
    assert!(why.contains("terminationGracePeriodSeconds"), "{why}");
}

/// Every option of `rentabot serve` that has an environment variable is either the
/// chart's own (where to listen, the state, the descriptor, the auth config) or a key
/// of values `config`, which the schema documents; numbers are written as integers.
#[test]
fn every_serve_setting_is_the_charts_own_or_a_config_value() {
    let test = "every_serve_setting_is_the_charts_own_or_a_config_value";
    let cli = rentabot::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("rentabot serve");
    let mut wanted: BTreeSet<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_str().unwrap().to_owned())
        .collect();
    assert!(wanted.contains("RENTABOT_QUEUE_AGING"), "{wanted:?}");

    let every = json!({
        "logLevel": "debug", "logFormat": "json", "workers": 2, "maxConnections": 500,
        "headTimeout": 7, "keepAlive": 0, "bodyTimeout": 30, "queueAging": 600,
        "claimWindow": 90, "expiryWarning": 0, "maxPendingReservations": 1_000_000,
        "allowedOrigins": ["https://dash.example.com", "http://10.0.0.5:8080"],
        "auditRetention": 100_000_000, "auditLog": true,
        "otlpEndpoint": "http://collector:4318",
    });
    let schema = schema();
    let documented: BTreeSet<&String> = schema["properties"]["config"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        every.as_object().unwrap().keys().collect::<BTreeSet<_>>(),
        documented,
        "this test sets every key the schema documents"
    );
    let Some(r) = render(
        test,
        &json!({
            "config": every,
            "descriptor": {"board-1": {"tags": "board"}},
            "auth": {"config": {"api_keys": []}},
        }),
    ) else {
        return;
    };
    let env = r.env();
    // The HA settings are PostgreSQL's (values ha): a pair on a database, without the
    // SQLite-only audit file.
    let Some(pair) = render(
        test,
        &json!({
            "replicas": 2,
            "persistence": {"postgres": {"enabled": true, "existingSecret": "pg"}},
            "ha": {"leaderTimeout": 3, "grace": 2},
        }),
    ) else {
        return;
    };
    let mut set: BTreeSet<String> = env.keys().cloned().collect();
    set.extend(pair.env().into_keys());
    for name in HA_ENV {
        assert!(!env.contains_key(name), "{name} is PostgreSQL's");
        if !wanted.contains(name) {
            // The HA flags land in src/cli.rs apart from the chart: until they do, the
            // chart's names are all this test can hold it to.
            eprintln!("NOTE {test}: rentabot serve has no {name} yet; the chart sets it");
            wanted.insert(name.to_owned());
        }
    }
    assert_eq!(set, wanted, "the chart sets exactly the serve options");
    assert_eq!(env["RENTABOT_MAX_PENDING_RESERVATIONS"], "1000000");
    assert_eq!(env["RENTABOT_AUDIT_RETENTION"], "100000000");
    assert_eq!(env["RENTABOT_KEEP_ALIVE"], "0");
    assert_eq!(env["RENTABOT_EXPIRY_WARNING"], "0");
    assert_eq!(
        env["RENTABOT_ALLOWED_ORIGINS"],
        "https://dash.example.com,http://10.0.0.5:8080"
    );
    assert_eq!(env["RENTABOT_AUDIT_LOG"], "/data/audit.jsonl");
    assert_eq!(env["RENTABOT_LOG_FORMAT"], "json");

    // Unset, empty or off: the binary's default.
    let Some(r) = render(
        test,
        &json!({"config": {"auditLog": false, "allowedOrigins": [], "otlpEndpoint": ""},
                "extraEnv": [{"name": "TZ", "value": "UTC"}]}),
    ) else {
        return;
    };
    assert_eq!(
        r.env().keys().collect::<Vec<_>>(),
        ["RENTABOT_HOST", "RENTABOT_PERSIST", "RENTABOT_PORT", "TZ"]
    );
}

/// The variables of `rentabot serve`'s HA flags, which the chart sets from values `ha`
/// with PostgreSQL only.
const HA_ENV: [&str; 2] = ["RENTABOT_HA_LEADER_TIMEOUT", "RENTABOT_HA_GRACE"];

#[test]
fn the_descriptor_and_the_auth_config_come_from_a_configmap_and_a_secret() {
    let test = "the_descriptor_and_the_auth_config_come_from_a_configmap_and_a_secret";
    let descriptor = json!({"board-1": {"tags": "board,arm", "max-lock-duration": 600}});
    let auth = json!({"api_keys": [{"name": "ci", "key": "0123456789abcdef", "role": "admin"}]});
    let Some(r) = render(
        test,
        &json!({"descriptor": descriptor, "auth": {"config": auth}}),
    ) else {
        return;
    };
    let map = r.get("descriptor-configmap");
    assert_eq!(map["kind"], "ConfigMap");
    let text = map["data"]["descriptor.yaml"].as_str().unwrap();
    assert_eq!(serde_yaml_ng::from_str::<Value>(text).unwrap(), descriptor);
    assert_eq!(
        r.volume("descriptor")["configMap"]["name"],
        map["metadata"]["name"]
    );
    assert_eq!(
        r.mount("descriptor")["mountPath"],
        "/etc/rentabot/descriptor"
    );
    assert_eq!(r.mount("descriptor")["readOnly"], true);
    assert_eq!(
        r.env()["RENTABOT_CONFIG"],
        "/etc/rentabot/descriptor/descriptor.yaml"
    );

    let secret = r.get("auth-secret");
    assert_eq!(secret["kind"], "Secret");
    let text = base64_decode(secret["data"]["auth.yaml"].as_str().unwrap());
    assert_eq!(serde_yaml_ng::from_str::<Value>(&text).unwrap(), auth);
    assert_eq!(
        r.volume("auth")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    // A directory, not a subPath: updates of the Secret reach the file.
    assert_eq!(r.mount("auth")["mountPath"], "/etc/rentabot/auth");
    assert!(r.mount("auth").get("subPath").is_none());
    assert_eq!(
        r.env()["RENTABOT_AUTH_CONFIG"],
        "/etc/rentabot/auth/auth.yaml"
    );
    assert!(
        r.notes
            .contains("Access control: the auth config of Secret demo-rentabot-auth")
    );

    // As text, both are copied as they are, comments included.
    let text = "# the lab\nboard-1:\n  tags: \"board\"\n";
    let Some(r) = render(
        test,
        &json!({"descriptor": text, "auth": {"config": "api_keys: []  # none yet\n"}}),
    ) else {
        return;
    };
    assert_eq!(
        r.get("descriptor-configmap")["data"]["descriptor.yaml"],
        text.trim_end()
    );
    assert_eq!(
        base64_decode(r.get("auth-secret")["data"]["auth.yaml"].as_str().unwrap()),
        "api_keys: []  # none yet\n"
    );

    // Existing objects are mounted, not rendered, under the keys given.
    let Some(r) = render(
        test,
        &json!({
            "descriptor": descriptor, "existingDescriptorConfigMap": "lab", "descriptorKey": "lab.yaml",
            "auth": {"config": auth, "existingSecret": "keys", "secretKey": "rentabot.yaml"},
        }),
    ) else {
        return;
    };
    assert!(!r.has("descriptor-configmap"));
    assert!(!r.has("auth-secret"));
    assert_eq!(r.volume("descriptor")["configMap"]["name"], "lab");
    assert_eq!(r.volume("auth")["secret"]["secretName"], "keys");
    assert_eq!(
        r.env()["RENTABOT_CONFIG"],
        "/etc/rentabot/descriptor/lab.yaml"
    );
    assert_eq!(
        r.env()["RENTABOT_AUTH_CONFIG"],
        "/etc/rentabot/auth/rentabot.yaml"
    );
    assert!(!r.notes.contains("WARNING"), "{}", r.notes);
}

/// The pod template carries checksums of the inline descriptor and auth config, so a
/// change of either rolls the pod, and nothing else changes them.
#[test]
fn a_changed_descriptor_or_auth_config_rolls_the_pod() {
    let test = "a_changed_descriptor_or_auth_config_rolls_the_pod";
    let checksums = |values: Value| {
        render(test, &values).map(|r| {
            (
                r.annotation("checksum/descriptor").to_owned(),
                r.annotation("checksum/auth").to_owned(),
            )
        })
    };
    let base =
        json!({"descriptor": {"board-1": {"tags": "a"}}, "auth": {"config": {"api_keys": []}}});
    let Some(before) = checksums(base.clone()) else {
        return;
    };
    let mut changed = base.clone();
    changed["descriptor"]["board-1"]["tags"] = json!("b");
    let after = checksums(changed).unwrap();
    assert_ne!(before.0, after.0, "a new descriptor rolls the pod");
    assert_eq!(before.1, after.1);

    let mut changed = base.clone();
    changed["auth"]["config"]["metrics_require_key"] = json!(true);
    let after = checksums(changed).unwrap();
    assert_eq!(before.0, after.0);
    assert_ne!(before.1, after.1, "a new auth config rolls the pod");

    let mut changed = base;
    changed["service"] = json!({"port": 80});
    assert_eq!(checksums(changed).unwrap(), before);
}

#[test]
fn without_persistence_the_state_is_on_an_empty_dir_and_the_notes_say_so() {
    let test = "without_persistence_the_state_is_on_an_empty_dir_and_the_notes_say_so";
    let Some(r) = render(test, &json!({"persistence": {"enabled": false}})) else {
        return;
    };
    let sts = r.get("statefulset");
    assert!(sts["spec"].get("volumeClaimTemplates").is_none());
    assert!(
        sts["spec"]
            .get("persistentVolumeClaimRetentionPolicy")
            .is_none()
    );
    assert!(r.volume("data")["emptyDir"].is_object());
    assert_eq!(r.mount("data")["mountPath"], "/data");
    assert!(
        r.notes.contains("WARNING: persistence.enabled is false"),
        "{}",
        r.notes
    );

    let Some(r) = render(
        test,
        &json!({"persistence": {"size": "20Gi", "storageClassName": "fast"}}),
    ) else {
        return;
    };
    let claim = &r.get("statefulset")["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(claim["storageClassName"], "fast");
    assert!(r.has_mount("data"));
}

#[test]
fn ingress_and_service_monitor_lead_to_the_service_when_enabled() {
    let test = "ingress_and_service_monitor_lead_to_the_service_when_enabled";
    let Some(r) = render(
        test,
        &json!({
            "ingress": {"enabled": true, "className": "nginx",
                        "hosts": [{"host": "lab.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                        "tls": [{"secretName": "lab-tls", "hosts": ["lab.example.com"]}]},
            "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "kps"},
                                           "apiKeySecret": {"name": "scrape", "key": "key"}}},
        }),
    ) else {
        return;
    };
    let service = r.get("service");
    let name = &service["metadata"]["name"];
    let ingress = r.get("ingress");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "lab.example.com");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"],
        json!({"name": name, "port": {"name": "http"}})
    );
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "lab-tls");
    assert!(r.notes.contains("https://lab.example.com/"), "{}", r.notes);

    let monitor = r.get("servicemonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kps");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["lab"])
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        endpoint["authorization"],
        json!({"type": "Bearer", "credentials": {"name": "scrape", "key": "key"}})
    );
}

/// values.schema.json refuses unknown keys and values rentabot or Kubernetes would
/// refuse, naming them; the templates refuse a second replica even without the schema.
#[test]
fn the_chart_refuses_values_that_would_not_work() {
    let test = "the_chart_refuses_values_that_would_not_work";
    let cases = [
        (
            json!({"replicas": 2}),
            "/replicas",
            "one SQLite file, one rentabot",
        ),
        (json!({"replica": 1}), "replica", "a typo"),
        (
            json!({"persistence": {"sise": "1Gi"}}),
            "sise",
            "a typo in a section",
        ),
        (
            json!({"config": {"logLevle": "debug"}}),
            "logLevle",
            "not a setting",
        ),
        (
            json!({"config": {"maxConnections": 0}}),
            "maxConnections",
            "rentabot refuses 0",
        ),
        (
            json!({"config": {"logFormat": "yaml"}}),
            "logFormat",
            "text or json",
        ),
        (
            json!({"config": {"allowedOrigins": ["dash.example.com"]}}),
            "allowedOrigins",
            "no scheme",
        ),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "pullPolicy",
            "not a policy",
        ),
        (
            json!({"persistence": {"size": "lots"}}),
            "size",
            "not a quantity",
        ),
        (
            json!({"ingress": {"enabled": true, "hosts": [{"host": "x"}]}}),
            "paths",
            "no paths",
        ),
    ];
    for (values, named, why) in cases {
        let Some(error) = refusal(test, &values) else {
            return;
        };
        assert!(error.contains(named), "{values} ({why}): {error}");
    }
    // A second replica needs PostgreSQL, and the refusal says so.
    let Some(error) = refusal(test, &json!({"replicas": 2})) else {
        return;
    };
    assert!(
        error.contains("/replicas") && error.contains("/persistence/postgres/enabled"),
        "{error}"
    );
    let Some(error) = template_refusal(test, &json!({"replicas": 3})) else {
        return;
    };
    assert!(error.contains("replicas must be 1, not 3"), "{error}");
    assert!(error.contains("persistence.postgres"), "{error}");
}

/// The values of the PostgreSQL mode that would not work are refused too, by the schema
/// or (what it cannot say) by the templates, naming what to fix.
#[test]
fn the_chart_refuses_a_postgres_pair_that_would_not_work() {
    let test = "the_chart_refuses_a_postgres_pair_that_would_not_work";
    let pg = json!({"enabled": true, "existingSecret": "pg"});
    let cases = [
        (
            json!({"persistence": {"postgres": {"enabled": true, "url": "mysql://db/x"}}}),
            "/persistence/postgres/url",
            "not a postgres:// URL",
        ),
        (
            json!({"persistence": {"postgres": {"enabled": true, "existingSecret": "pg", "secret": "x"}}}),
            "secret",
            "a typo in the section",
        ),
        (
            json!({"replicas": 2, "persistence": {"postgres": pg}, "ha": {"leaderTimeout": 0}}),
            "/ha/leaderTimeout",
            "rentabot refuses 0",
        ),
        (
            json!({"replicas": 2, "persistence": {"postgres": pg}, "ha": {"grace": 3601}}),
            "/ha/grace",
            "above 3600",
        ),
        (
            json!({"replicas": 2, "persistence": {"postgres": pg}, "ha": {"antiAffinity": "soft"}}),
            "/ha/antiAffinity",
            "not a mode",
        ),
        (
            json!({"ha": {"podDisruptionBudget": {"enabled": true, "maxUnavailable": 0}}}),
            "/ha/podDisruptionBudget/maxUnavailable",
            "blocks every eviction",
        ),
        (json!({"ha": {"leaderTimout": 5}}), "leaderTimout", "a typo"),
        (
            json!({"replicas": 11, "persistence": {"postgres": pg}}),
            "/replicas",
            "more than the schema's 10",
        ),
    ];
    for (values, named, why) in cases {
        let Some(error) = refusal(test, &values) else {
            return;
        };
        assert!(error.contains(named), "{values} ({why}): {error}");
    }
    let cases = [
        (
            json!({"replicas": 2, "persistence": {"postgres": {"enabled": true}}}),
            "persistence.postgres.existingSecret",
            "no URL",
        ),
        (
            json!({"persistence": {"postgres": pg}, "config": {"auditLog": true}}),
            "config.auditLog needs the SQLite volume",
            "no /data",
        ),
    ];
    for (values, named, why) in cases {
        let Some(error) = refusal(test, &values) else {
            return;
        };
        assert!(error.contains(named), "{values} ({why}): {error}");
        let error = template_refusal(test, &values).unwrap();
        assert!(
            error.contains(named),
            "{values} ({why}), templates: {error}"
        );
    }
}

/// With the state on PostgreSQL, `replicas: 2` is an active/standby pair: a Deployment
/// of two interchangeable pods with no claim, the URL from the user's Secret, the HA
/// settings, a PodDisruptionBudget and an anti-affinity over nodes; the Service (which
/// routes to Ready pods: the active) and the probes as with SQLite.
#[test]
fn with_postgres_two_replicas_run_as_an_active_standby_pair() {
    let test = "with_postgres_two_replicas_run_as_an_active_standby_pair";
    let values = json!({
        "replicas": 2,
        "persistence": {"postgres": {"enabled": true, "existingSecret": "rentabot-pg", "secretKey": "dsn"}},
        "ha": {"leaderTimeout": 5, "grace": 0},
    });
    let Some(r) = render(test, &values) else {
        return;
    };
    assert_eq!(
        r.names(),
        [
            "deployment",
            "grafana-dashboard",
            "poddisruptionbudget",
            "service",
            "serviceaccount"
        ],
        "no StatefulSet, and no Secret of the chart's: the URL is in the user's"
    );
    let deployment = r.get("deployment");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["metadata"]["name"], "demo-rentabot");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(deployment["spec"].get("volumeClaimTemplates").is_none());
    // Only the active is ever Ready: an update that kept one pod available would wait
    // forever for a new one.
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"}})
    );

    // No state volume: /tmp only.
    assert!(!r.has_mount("data"), "{}", r.container()["volumeMounts"]);
    assert!(!r.has_volume("data"), "{}", r.pod()["volumes"]);
    assert_eq!(r.mount("tmp")["mountPath"], "/tmp");
    assert!(r.volume("tmp")["emptyDir"].is_object());

    // The URL from the Secret, never in the manifest; the HA settings as given.
    assert_eq!(
        r.env_var("RENTABOT_PERSIST"),
        &json!({"name": "RENTABOT_PERSIST",
                "valueFrom": {"secretKeyRef": {"name": "rentabot-pg", "key": "dsn"}}})
    );
    let env = r.env();
    assert_eq!(env["RENTABOT_HA_LEADER_TIMEOUT"], "5");
    assert_eq!(env["RENTABOT_HA_GRACE"], "0", "0 is a setting, not unset");

    // Liveness on /health (a standby answers it), readiness on /readiness (the active
    // only), and the Service selects the pods by the labels both carry.
    let container = r.container();
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readiness");
    let selector = &r.get("service")["spec"]["selector"];
    assert!(
        r.get("service")["spec"]
            .get("publishNotReadyAddresses")
            .is_none()
    );
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], selector);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "{key}");
    }

    // The budget: standbys (never Ready) always evictable, the active counted.
    let pdb = r.get("poddisruptionbudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    // Spread over nodes, preferred by default.
    let anti = &r.pod()["affinity"]["podAntiAffinity"];
    let preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .unwrap_or_else(|| panic!("no preferred anti-affinity: {anti}"));
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0]["weight"], 100);
    let term = &preferred[0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&term["labelSelector"]["matchLabels"], selector);
    assert!(
        anti.get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );

    assert!(
        r.notes.contains("active/standby pair of 2 pods"),
        "{}",
        r.notes
    );
    assert!(
        r.notes.contains("Secret rentabot-pg, key dsn"),
        "{}",
        r.notes
    );
    assert!(!r.notes.contains("rentabot.db"), "{}", r.notes);

    // Required anti-affinity; a budget of your own; none at all.
    let mut required = values.clone();
    required["ha"] = json!({"antiAffinity": "required",
                            "podDisruptionBudget": {"enabled": true, "maxUnavailable": "50%"}});
    let r = render(test, &required).unwrap();
    let anti = &r.pod()["affinity"]["podAntiAffinity"];
    assert_eq!(
        anti,
        &json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
        ]})
    );
    assert_eq!(
        r.get("poddisruptionbudget")["spec"]["maxUnavailable"],
        "50%"
    );
    // Unset HA settings are the binary's defaults.
    assert!(!r.env().contains_key("RENTABOT_HA_LEADER_TIMEOUT"));
    assert!(!r.env().contains_key("RENTABOT_HA_GRACE"));

    let mut off = values.clone();
    off["ha"] = json!({"antiAffinity": "none", "podDisruptionBudget": {"enabled": false}});
    let r = render(test, &off).unwrap();
    assert!(r.pod().get("affinity").is_none(), "{}", r.pod());
    assert!(!r.has("poddisruptionbudget"));
    assert!(
        r.notes.contains("WARNING: ha.antiAffinity is none"),
        "{}",
        r.notes
    );

    // The user's affinity wins: their podAntiAffinity replaces the chart's, their other
    // rules keep it.
    let theirs = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone",
                                           "labelSelector": {"matchLabels": {"app": "x"}}}}]}});
    let mut own = values.clone();
    own["affinity"] = theirs.clone();
    let r = render(test, &own).unwrap();
    assert_eq!(r.pod()["affinity"], theirs);
    let arm = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]}}});
    let mut own = values.clone();
    own["affinity"] = arm.clone();
    let r = render(test, &own).unwrap();
    assert_eq!(r.pod()["affinity"]["nodeAffinity"], arm["nodeAffinity"]);
    assert_eq!(
        r.pod()["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );

    // One replica on PostgreSQL: a Deployment still, alone, so no budget and no spread.
    let mut one = values.clone();
    one["replicas"] = json!(1);
    let r = render(test, &one).unwrap();
    assert_eq!(r.get("deployment")["spec"]["replicas"], 1);
    assert!(!r.has("poddisruptionbudget"));
    assert!(r.pod().get("affinity").is_none(), "{}", r.pod());
}

/// The URL inline (less safe, and said so) goes into a Secret of the chart's, whose
/// change rolls the pods; an existing Secret wins over it.
#[test]
fn an_inline_postgres_url_is_rendered_into_a_secret_that_rolls_the_pods() {
    let test = "an_inline_postgres_url_is_rendered_into_a_secret_that_rolls_the_pods";
    let url = "postgres://rentabot:s3cret@db.lab:5432/rentabot";
    let values = |url: &str| json!({"replicas": 2, "persistence": {"postgres": {"enabled": true, "url": url}}});
    let Some(r) = render(test, &values(url)) else {
        return;
    };
    let secret = r.get("postgres-secret");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "demo-rentabot-postgres");
    assert_eq!(base64_decode(secret["data"]["url"].as_str().unwrap()), url);
    assert_eq!(
        r.env_var("RENTABOT_PERSIST")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-rentabot-postgres", "key": "url"})
    );
    assert!(
        !serde_json::to_string(r.workload())
            .unwrap()
            .contains("s3cret"),
        "the password is in the Secret only"
    );
    assert!(
        r.notes
            .contains("prefer persistence.postgres.existingSecret")
    );
    let before = r.annotation("checksum/postgres").to_owned();
    let r = render(test, &values("postgres://rentabot:other@db.lab/rentabot")).unwrap();
    assert_ne!(r.annotation("checksum/postgres"), before);

    let mut both = values(url);
    both["persistence"]["postgres"]["existingSecret"] = json!("pg");
    let r = render(test, &both).unwrap();
    assert!(!r.has("postgres-secret"));
    assert_eq!(
        r.env_var("RENTABOT_PERSIST")["valueFrom"]["secretKeyRef"]["name"],
        "pg"
    );
}
