{{/* The chart's name, or nameOverride. */}}
{{- define "rentabot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of resource names: fullnameOverride, or <release>-<name> (just the release
when it already contains the name). At most 63 characters, a DNS label.
*/}}
{{- define "rentabot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "rentabot.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The selector labels. */}}
{{- define "rentabot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rentabot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every resource. */}}
{{- define "rentabot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rentabot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image reference: repository@digest, or repository:tag (tag: appVersion). */}}
{{- define "rentabot.image" -}}
{{- with .Values.image -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (.tag | default $.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "rentabot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "rentabot.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the descriptor; empty when there is none. */}}
{{- define "rentabot.descriptorConfigMap" -}}
{{- if .Values.existingDescriptorConfigMap -}}
{{- .Values.existingDescriptorConfigMap -}}
{{- else if .Values.descriptor -}}
{{- printf "%s-descriptor" (include "rentabot.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the auth config; empty when there is none (rentabot is open). */}}
{{- define "rentabot.authSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if .Values.auth.config -}}
{{- printf "%s-auth" (include "rentabot.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The settings of values `config`, by the environment variable each one sets (src/cli.rs);
values.schema.json lists the same keys. RENTABOT_HOST, _PORT, _PERSIST, _CONFIG,
_AUTH_CONFIG, _HA_LEADER_TIMEOUT and _HA_GRACE are the chart's own. auditLog is a switch: the file goes to /data.
*/}}
{{- define "rentabot.configEnvNames" -}}
logLevel: RENTABOT_LOG_LEVEL
logFormat: RENTABOT_LOG_FORMAT
workers: RENTABOT_WORKERS
maxConnections: RENTABOT_MAX_CONNECTIONS
headTimeout: RENTABOT_HEAD_TIMEOUT
keepAlive: RENTABOT_KEEP_ALIVE
bodyTimeout: RENTABOT_BODY_TIMEOUT
queueAging: RENTABOT_QUEUE_AGING
claimWindow: RENTABOT_CLAIM_WINDOW
expiryWarning: RENTABOT_EXPIRY_WARNING
maxPendingReservations: RENTABOT_MAX_PENDING_RESERVATIONS
allowedOrigins: RENTABOT_ALLOWED_ORIGINS
auditRetention: RENTABOT_AUDIT_RETENTION
auditLog: RENTABOT_AUDIT_LOG
otlpEndpoint: RENTABOT_OTLP_ENDPOINT
{{- end -}}

{{/*
The container's environment: where to listen, the state (the SQLite file, or the
postgres:// URL from its Secret and the HA settings of values `ha`), the descriptor and
the auth config, then values `config` and extraEnv. Numbers are printed as integers (Helm
reads values as floats, which would print 1000000 as 1e+06).
*/}}
{{- define "rentabot.env" -}}
- name: RENTABOT_HOST
  value: "0.0.0.0"
- name: RENTABOT_PORT
  value: "8000"
{{- if include "rentabot.postgres" . }}
- name: RENTABOT_PERSIST
  valueFrom:
    secretKeyRef:
      name: {{ include "rentabot.postgresSecret" . }}
      key: {{ .Values.persistence.postgres.secretKey }}
{{- with .Values.ha }}
{{- if not (kindIs "invalid" .leaderTimeout) }}
- name: RENTABOT_HA_LEADER_TIMEOUT
  value: {{ .leaderTimeout | int64 | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .grace) }}
- name: RENTABOT_HA_GRACE
  value: {{ .grace | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- else }}
- name: RENTABOT_PERSIST
  value: sqlite:////data/rentabot.db
{{- end }}
{{- if include "rentabot.descriptorConfigMap" . }}
- name: RENTABOT_CONFIG
  value: /etc/rentabot/descriptor/{{ .Values.descriptorKey }}
{{- end }}
{{- if include "rentabot.authSecret" . }}
- name: RENTABOT_AUTH_CONFIG
  value: /etc/rentabot/auth/{{ .Values.auth.secretKey }}
{{- end }}
{{- $names := include "rentabot.configEnvNames" . | fromYaml }}
{{- range $key, $value := .Values.config }}
{{- if not (hasKey $names $key) }}
{{- fail (printf "config.%s is not a rentabot setting (values.yaml lists them)" $key) }}
{{- end }}
{{- if eq $key "auditLog" }}
{{- if $value }}
- name: RENTABOT_AUDIT_LOG
  value: /data/audit.jsonl
{{- end }}
{{- else if kindIs "slice" $value }}
{{- if $value }}
- name: {{ get $names $key }}
  value: {{ join "," $value | quote }}
{{- end }}
{{- else if or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) }}
- name: {{ get $names $key }}
  value: {{ $value | int64 | toString | quote }}
{{- else if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
- name: {{ get $names $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
"true" when the state is on PostgreSQL (values persistence.postgres.enabled: a
Deployment of `replicas` pods, one active and the others standby); empty with SQLite (the
StatefulSet of one pod).
*/}}
{{- define "rentabot.postgres" -}}
{{- if and .Values.persistence.postgres .Values.persistence.postgres.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* The Secret holding the postgres:// URL: existingSecret, or the chart's (url). */}}
{{- define "rentabot.postgresSecret" -}}
{{- if .Values.persistence.postgres.existingSecret -}}
{{- .Values.persistence.postgres.existingSecret -}}
{{- else -}}
{{- printf "%s-postgres" (include "rentabot.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
What the schema cannot say, refused by the templates too (`helm template
--skip-schema-validation` renders nothing that would not work): more than one replica
without PostgreSQL, PostgreSQL without a URL, an audit file without a volume for it.
*/}}
{{- define "rentabot.validate" -}}
{{- if include "rentabot.postgres" . }}
{{- if not (or .Values.persistence.postgres.existingSecret .Values.persistence.postgres.url) }}
{{- fail "persistence.postgres.enabled needs the postgres:// URL: persistence.postgres.existingSecret (a Secret holding it under persistence.postgres.secretKey) or persistence.postgres.url" }}
{{- end }}
{{- if lt (int .Values.replicas) 1 }}
{{- fail (printf "replicas must be at least 1, not %v" .Values.replicas) }}
{{- end }}
{{- if .Values.config.auditLog }}
{{- fail "config.auditLog needs the SQLite volume /data: with persistence.postgres the audit trail is in the database (config.auditRetention records, GET /api/v1/audit)" }}
{{- end }}
{{- else if ne (int .Values.replicas) 1 }}
{{- fail (printf "replicas must be 1, not %v: the state is one SQLite file that only one rentabot may open; for an active/standby pair put it on PostgreSQL (persistence.postgres)" .Values.replicas) }}
{{- end }}
{{- end -}}

{{/*
The pod's affinity: values `affinity`, plus, with PostgreSQL and more than one replica,
an anti-affinity that spreads the replicas over nodes (kubernetes.io/hostname): preferred
or required as values ha.antiAffinity says. A podAntiAffinity of values `affinity` wins.
*/}}
{{- define "rentabot.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) -}}
{{- if and (include "rentabot.postgres" .) (gt (int .Values.replicas) 1) (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "rentabot.selectorLabels" . | fromYaml)) -}}
{{- if eq .Values.ha.antiAffinity "required" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else if eq .Values.ha.antiAffinity "preferred" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- if $affinity -}}
{{- toYaml $affinity -}}
{{- end -}}
{{- end -}}
