{{/*
The pod template (metadata and spec) of the StatefulSet (SQLite) and of the Deployment
(PostgreSQL): non-root with a read-only root filesystem; /tmp an emptyDir and, with
SQLite only, /data the state's volume. The checksums of the inline descriptor, auth
config (and PostgreSQL URL) roll the pods when they change.
*/}}
{{- define "rentabot.podTemplate" -}}
{{- $descriptor := include "rentabot.descriptorConfigMap" . }}
{{- $auth := include "rentabot.authSecret" . }}
{{- $postgres := include "rentabot.postgres" . }}
metadata:
  labels:
    {{- include "rentabot.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/descriptor: {{ include (print $.Template.BasePath "/descriptor-configmap.yaml") . | sha256sum }}
    checksum/auth: {{ include (print $.Template.BasePath "/auth-secret.yaml") . | sha256sum }}
    {{- if $postgres }}
    checksum/postgres: {{ include (print $.Template.BasePath "/postgres-secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "rentabot.serviceAccountName" . }}
  automountServiceAccountToken: false
  # No RENTABOT_PORT=tcp://... from a Service named rentabot: service links would
  # set variables that rentabot reads.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: rentabot
      image: {{ include "rentabot.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      env:
        {{- include "rentabot.env" . | nindent 8 }}
      ports:
        - name: http
          containerPort: 8000
          protocol: TCP
      # /health answers 200 on the active and on a standby (PostgreSQL); /readiness
      # only on the active, so the Service sends every request to it.
      startupProbe:
        httpGet:
          path: /health
          port: http
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /health
          port: http
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readiness
          port: http
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        {{- if not $postgres }}
        - name: data
          mountPath: /data
        {{- end }}
        - name: tmp
          mountPath: /tmp
        {{- if $descriptor }}
        - name: descriptor
          mountPath: /etc/rentabot/descriptor
          readOnly: true
        {{- end }}
        {{- if $auth }}
        - name: auth
          mountPath: /etc/rentabot/auth
          readOnly: true
        {{- end }}
  volumes:
    # SQLite's temporary files (large sorts), the only other writable path.
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if and (not $postgres) (not .Values.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- if $descriptor }}
    - name: descriptor
      configMap:
        name: {{ $descriptor }}
    {{- end }}
    {{- if $auth }}
    - name: auth
      secret:
        secretName: {{ $auth }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "rentabot.affinity" . }}
  affinity:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
