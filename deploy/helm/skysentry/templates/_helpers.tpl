{{/* Names and labels */}}
{{- define "skysentry.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "skysentry.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "skysentry.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "skysentry.redisSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "skysentry.fullname" .)) }}
{{- end }}

{{/* The environment every SkySentry container shares: the settings file, Kafka, the metrics port */}}
{{- define "skysentry.env" -}}
- name: SKYSENTRY_CONFIG
  value: /etc/skysentry/settings.yaml
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: SKYSENTRY_METRICS__ENABLED
  value: "true"
- name: SKYSENTRY_METRICS__HOST
  value: 0.0.0.0
- name: SKYSENTRY_METRICS__PORT
  value: {{ .Values.metricsPort | quote }}
{{- end }}

{{- define "skysentry.envFrom" -}}
{{- if or .Values.secrets.env .Values.secrets.existingSecret }}
envFrom:
  {{- if .Values.secrets.env }}
  - secretRef:
      name: {{ include "skysentry.fullname" . }}-env
  {{- end }}
  {{- with .Values.secrets.existingSecret }}
  - secretRef:
      name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Probes on the metrics port: /livez = event loop alive, /readyz = ready to work */}}
{{- define "skysentry.probes" -}}
startupProbe:
  httpGet: {path: /livez, port: metrics}
  {{- toYaml .Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /livez, port: metrics}
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}

{{- define "skysentry.volumes" -}}
volumes:
  - name: settings
    configMap:
      name: {{ include "skysentry.fullname" . }}-settings
  - name: tmp
    emptyDir: {}
{{- end }}

{{- define "skysentry.volumeMounts" -}}
volumeMounts:
  - name: settings
    mountPath: /etc/skysentry
    readOnly: true
  - name: tmp
    mountPath: /tmp
{{- end }}

{{- define "skysentry.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: 30
{{- end }}

{{/* The extra variables of a component (a map), as env entries */}}
{{- define "skysentry.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}
