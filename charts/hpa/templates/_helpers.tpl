{{/* Names ------------------------------------------------------------------------------------- */}}

{{- define "hpa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hpa.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one role's objects: <fullname>-<component>. */}}
{{- define "hpa.componentName" -}}
{{- printf "%s-%s" (include "hpa.fullname" .ctx | trunc 40 | trimSuffix "-") .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hpa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hpa.labels" -}}
helm.sh/chart: {{ include "hpa.chart" . }}
{{ include "hpa.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hpa
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hpa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hpa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one role: (dict "ctx" $ "component" "inference"). */}}
{{- define "hpa.componentLabels" -}}
{{ include "hpa.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hpa.componentSelectorLabels" -}}
{{ include "hpa.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hpa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hpa.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hpa.configMapName" -}}
{{- printf "%s-config" (include "hpa.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the bundled NATS chart's objects (its nats.fullname, evaluated with its values). */}}
{{- define "hpa.natsFullname" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "nats" .Values.nats.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* NATS client URL: config.nats.url, or the bundled NATS service. */}}
{{- define "hpa.natsURL" -}}
{{- if .Values.config.nats.url }}
{{- .Values.config.nats.url }}
{{- else if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc.%s:4222" (include "hpa.natsFullname" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- fail "NATS: set config.nats.url to an external NATS JetStream server, or nats.enabled=true for the bundled one" }}
{{- end }}
{{- end }}

{{/* Monitoring endpoint (host:port) KEDA's nats-jetstream scaler reads /jsz from. With the bundled
NATS it is the headless service: in a cluster only the consumer leader reports the true pending count,
and KEDA finds the leader as <server-name>.<endpoint> (kedacore/keda 3860, 6042, 7322). */}}
{{- define "hpa.natsMonitoringEndpoint" -}}
{{- if .Values.keda.natsMonitoringEndpoint }}
{{- .Values.keda.natsMonitoringEndpoint }}
{{- else if .Values.nats.enabled }}
{{- printf "%s-headless.%s.svc.%s:8222" (include "hpa.natsFullname" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- fail "keda.natsMonitoringEndpoint (host:port of the NATS monitoring endpoint; in a cluster its headless service) is required with an external NATS and keda.enabled=true" }}
{{- end }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------------ */}}

{{/* Image of a role: (dict "ctx" $ "gpu" bool "train" bool): the cpu, cpu-train, gpu or gpu-train
target of deploy/Dockerfile. */}}
{{- define "hpa.image" -}}
{{- $img := .ctx.Values.image }}
{{- $base := default .ctx.Chart.AppVersion $img.tag }}
{{- $tag := $base }}
{{- if and .gpu .train }}
{{- $tag = default (printf "%s-gpu-train" $base) $img.gpuTrainTag }}
{{- else if .gpu }}
{{- $tag = default (printf "%s-gpu" $base) $img.gpuTag }}
{{- else if .train }}
{{- $tag = default (printf "%s-train" $base) $img.trainTag }}
{{- end }}
{{- printf "%s:%s" $img.repository $tag }}
{{- end }}

{{/* Pod-level pieces shared by every role ------------------------------------------------------ */}}

{{/* The ConfigMap's config.yaml: .Values.config plus the keys the chart owns (metrics addresses,
model location and pointer of the consumers and the viewer, ONNX Runtime provider, NATS URL). */}}
{{- define "hpa.configYAML" -}}
{{- $c := deepCopy .Values.config }}
{{- $_ := set $c "cache_dir" .Values.cache.mountPath }}
{{- $_ := set $c.nats "url" (include "hpa.natsURL" .) }}
{{- if and .Values.nats.enabled .Values.nats.config.cluster.enabled (le (int (default 1 $c.nats.replicas)) 1) }}
{{- $_ := set $c.nats "replicas" (min 5 (int .Values.nats.config.cluster.replicas)) }}
{{- end }}
{{- $_ := set $c.inference "metrics_addr" (printf ":%d" (int .Values.metrics.port)) }}
{{- $_ := set $c.inference "model" (default .Values.models.bundledPath .Values.models.location) }}
{{- $_ := set $c.inference "model_pointer" .Values.models.pointer }}
{{- $_ := set $c.web "model" (default .Values.models.bundledPath .Values.models.location) }}
{{- $_ := set $c.web "model_pointer" .Values.models.pointer }}
{{- $_ := set $c.ort "provider" (ternary .Values.inference.gpu.provider "cpu" .Values.inference.gpu.enabled) }}
{{- toYaml $c }}
{{- end }}

{{- define "hpa.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Annotations of every pod: config checksum (a changed ConfigMap rolls the pods) and Prometheus scrape. */}}
{{- define "hpa.podAnnotations" -}}
checksum/config: {{ include "hpa.configYAML" .ctx | sha256sum }}
{{- if and .ctx.Values.metrics.scrapeAnnotations (not .noScrape) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .ctx.Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .ctx.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment every hpa container gets: secrets from existing Secrets (never in the ConfigMap),
TMPDIR on the cache volume (model downloads), then the role's metrics address and extra env. */}}
{{- define "hpa.env" -}}
- name: TMPDIR
  value: {{ .ctx.Values.cache.mountPath | quote }}
{{- with .ctx.Values.s3Credentials }}
{{- if .existingSecret }}
- name: HPA_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .accessKeyKey | quote }}
- name: HPA_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .secretKeyKey | quote }}
{{- end }}
{{- end }}
{{- with .ctx.Values.natsCredentials }}
{{- if and .existingSecret .passwordKey }}
- name: HPA_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
{{- if and .existingSecret .tokenKey }}
- name: HPA_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .tokenKey | quote }}
{{- end }}
{{- if and .existingSecret .credsKey }}
- name: HPA_NATS_CREDS
  value: /etc/hpa/nats/{{ .credsKey }}
{{- end }}
{{- end }}
{{- if .section }}
- name: HPA_{{ .section | upper }}_{{ default "metrics_addr" .addrKey | upper }}
  value: {{ printf ":%d" (int .ctx.Values.metrics.port) | quote }}
{{- end }}
{{- with .env }}
{{ toYaml . }}
{{- end }}
{{- with .ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .role.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hpa.volumeMounts" -}}
- name: config
  mountPath: /etc/hpa
  readOnly: true
- name: cache
  mountPath: {{ .Values.cache.mountPath }}
- name: tmp
  mountPath: /tmp
{{- if and .Values.natsCredentials.existingSecret .Values.natsCredentials.credsKey }}
- name: nats-creds
  mountPath: /etc/hpa/nats
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hpa.volumes" -}}
- name: config
  configMap:
    name: {{ include "hpa.configMapName" . }}
- name: cache
{{- if .Values.cache.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.cache.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.cache.sizeLimit }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if and .Values.natsCredentials.existingSecret .Values.natsCredentials.credsKey }}
- name: nats-creds
  secret:
    secretName: {{ .Values.natsCredentials.existingSecret }}
    items:
      - key: {{ .Values.natsCredentials.credsKey }}
        path: {{ .Values.natsCredentials.credsKey }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Probes of a role's container: (dict "ctx" $ "readyPath" "/readyz"|"/healthz"). */}}
{{- define "hpa.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  failureThreshold: {{ .ctx.Values.probes.startupFailureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: {{ default "/readyz" .readyPath }}
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/* The hpa container of a role: (dict "ctx" $ "role" .Values.x "name" "inference" "args" (list ...)
"section" "inference" "gpu" bool "gpuValues" .Values.x.gpu "env" (list ...) "probes" bool). */}}
{{- define "hpa.container" -}}
{{- $ctx := .ctx -}}
- name: {{ .name }}
  image: {{ include "hpa.image" (dict "ctx" $ctx "gpu" .gpu "train" .train) | quote }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command: ["hpa"]
  args:
    {{- toYaml .args | nindent 4 }}
    - --config
    - /etc/hpa/config.yaml
    {{- with .role.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "hpa.env" . | nindent 4 }}
  {{- if .probes }}
  ports:
    - name: http
      containerPort: {{ $ctx.Values.metrics.port }}
      protocol: TCP
  {{- include "hpa.probes" (dict "ctx" $ctx "readyPath" .readyPath) | nindent 2 }}
  lifecycle:
    preStop:
      exec:
        # Endpoints and load balancers stop sending work before SIGTERM starts the drain.
        command: ["sleep", "{{ $ctx.Values.preStopSleepSeconds }}"]
  {{- end }}
  resources:
    {{- $res := deepCopy .role.resources }}
    {{- if .gpu }}
    {{- $g := dict (.gpuValues.resourceName) (.gpuValues.count | toString) }}
    {{- $_ := set $res "limits" (merge (default (dict) $res.limits) $g) }}
    {{- $_ := set $res "requests" (merge (default (dict) $res.requests) $g) }}
    {{- end }}
    {{- toYaml $res | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    {{- include "hpa.volumeMounts" $ctx | nindent 4 }}
{{- end }}

{{/* Scheduling of a role: node selector, tolerations (plus the GPU taint's on GPU roles), affinity,
topology spread over nodes. (dict "ctx" $ "role" .Values.x "component" "inference" "gpu" bool "gpuValues" ...) */}}
{{- define "hpa.scheduling" -}}
{{- $sel := deepCopy (default (dict) .role.nodeSelector) }}
{{- if .gpu }}
{{- $sel = merge $sel (default (dict) .gpuValues.nodeSelector) }}
{{- end -}}
{{- with $sel }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tol := default (list) .role.tolerations }}
{{- if .gpu }}
{{- $tol = concat $tol (default (list) .gpuValues.tolerations) }}
{{- end }}
{{- with $tol }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpread }}
{{- if .enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .maxSkew }}
    topologyKey: {{ .topologyKey }}
    whenUnsatisfiable: {{ .whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "hpa.componentSelectorLabels" (dict "ctx" $.ctx "component" $.component) | nindent 8 }}
{{- end }}
{{- end }}
{{- with $.ctx.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* The pod spec every long-running role shares. */}}
{{- define "hpa.podSpec" -}}
{{- $ctx := .ctx -}}
serviceAccountName: {{ include "hpa.serviceAccountName" $ctx }}
automountServiceAccountToken: false
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "hpa.podSecurityContext" $ctx | nindent 2 }}
terminationGracePeriodSeconds: {{ .role.terminationGracePeriodSeconds }}
{{- with include "hpa.scheduling" . | trim }}
{{ . }}
{{- end }}
containers:
  {{- include "hpa.container" . | nindent 2 }}
volumes:
  {{- include "hpa.volumes" $ctx | nindent 2 }}
{{- end }}
