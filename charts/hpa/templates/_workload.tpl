{{/* A long-running role: its Deployment and its metrics Service.
(dict "ctx" $ "role" .Values.x "component" c "args" (list ...) "section" config-section "gpu" bool
"gpuValues" .Values.x.gpu "env" (list EnvVar...) "replicas" n|nil "strategy" "RollingUpdate"|"Recreate"
"addrKey" "metrics_addr"|"addr" "readyPath" "/readyz"|"/healthz" "noMetrics" bool). noMetrics: the role
serves no /metrics (no scrape annotations, no metrics Service). */}}
{{- define "hpa.workload" -}}
{{- $ctx := .ctx }}
{{- $role := .role }}
{{- $name := include "hpa.componentName" (dict "ctx" $ctx "component" .component) }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "hpa.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .replicas) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- if eq (default "RollingUpdate" .strategy) "Recreate" }}
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
    {{- end }}
  selector:
    matchLabels:
      {{- include "hpa.componentSelectorLabels" (dict "ctx" $ctx "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "hpa.componentSelectorLabels" (dict "ctx" $ctx "component" .component) | nindent 8 }}
      annotations:
        {{- include "hpa.podAnnotations" (dict "ctx" $ctx "role" $role "noScrape" .noMetrics) | nindent 8 }}
    spec:
      {{- include "hpa.podSpec" (merge (dict "name" .component "probes" true) .) | nindent 6 }}
{{- if not .noMetrics }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "hpa.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
    hpa.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "hpa.componentSelectorLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
  ports:
    - name: http-metrics
      port: {{ $ctx.Values.metrics.port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- end }}
