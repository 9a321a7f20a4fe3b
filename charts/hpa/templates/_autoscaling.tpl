{{/* Autoscaling of a Deployment: a KEDA ScaledObject on the pending count of a JetStream consumer, or,
without KEDA, a CPU HorizontalPodAutoscaler (which cannot scale from zero: at least 1 replica).
(dict "ctx" $ "name" deployment "component" c "scaling" .autoscaling "stream" s "consumer" c "fallback" bool) */}}
{{- define "hpa.autoscaler" -}}
{{- $ctx := .ctx }}
{{- $s := .scaling }}
{{- if $s.enabled }}
{{- if $ctx.Values.keda.enabled }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .name }}
  labels:
    {{- include "hpa.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicaCount: {{ $s.minReplicas }}
  maxReplicaCount: {{ $s.maxReplicas }}
  pollingInterval: {{ $ctx.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $ctx.Values.keda.cooldownPeriod }}
  {{- if and .fallback $s.fallbackReplicas }}
  fallback:
    failureThreshold: 3
    replicas: {{ $s.fallbackReplicas }}
  {{- end }}
  triggers:
    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: {{ include "hpa.natsMonitoringEndpoint" $ctx | quote }}
        account: {{ $ctx.Values.keda.account | quote }}
        stream: {{ .stream | quote }}
        consumer: {{ .consumer | quote }}
        lagThreshold: {{ $s.lagThreshold | quote }}
        activationLagThreshold: {{ $s.activationLagThreshold | quote }}
        useHttps: {{ $ctx.Values.keda.useHttps | quote }}
{{- else }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "hpa.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ max 1 (int $s.minReplicas) }}
  maxReplicas: {{ $s.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $s.targetCPUUtilizationPercentage }}
{{- end }}
{{- end }}
{{- end }}
