{{/* Chart name, cut to 63 characters (a DNS label). */}}
{{- define "certorder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, plus the chart name unless it holds it. */}}
{{- define "certorder.fullname" -}}
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

{{- define "certorder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that pick the operator's Pods; never change them (a Deployment's selector is immutable). */}}
{{- define "certorder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certorder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "certorder.labels" -}}
helm.sh/chart: {{ include "certorder.chart" . }}
{{ include "certorder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: certorder
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "certorder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "certorder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "certorder.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules the operator needs on namespaced resources in the namespaces whose orders it watches:
in a ClusterRole when it watches every namespace, in one Role per namespace otherwise. Each rule
says why it is there.
*/}}
{{- define "certorder.namespacedRules" -}}
# Orders: watched (list/watch) and read (get); patch adds and removes the operator's finalizer.
- apiGroups: ["certorder.io"]
  resources: ["certificateorders"]
  verbs: ["get", "list", "watch", "patch"]
# Order status: written once per reconcile by server-side apply (patch); get/update for
# kube-runtime's status helpers.
- apiGroups: ["certorder.io"]
  resources: ["certificateorders/status"]
  verbs: ["get", "patch", "update"]
# Secrets: the operator watches (list/watch) only Secrets labelled
# app.kubernetes.io/managed-by=certorder, but RBAC cannot restrict by label, so these verbs cover
# every Secret in scope. get reads the confirmation-letter Secret an OV/EV order names;
# create/update/delete the pending private key; patch (server-side apply) the TLS Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events on orders: core v1 for kubectl describe, events.k8s.io/v1 is what kube-runtime's
# Recorder writes (create, then patch to count a repeated event).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# HTTP domain validation: the validation file in a ConfigMap, a solver Pod serving it and a
# Service in front; created, watched, updated and deleted with the challenge.
- apiGroups: [""]
  resources: ["configmaps", "pods", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# HTTP domain validation: the route that sends /.well-known/pki-validation/ to the solver, as an
# Ingress of its own (server-side apply: patch) or as paths added to and removed from the user's
# existing Ingress (spec.domainValidation.http.ingressName: get, then update with its
# resourceVersion so a concurrent change is never overwritten).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# ... or a Gateway API HTTPRoute attached to spec.domainValidation.http.gatewayRef.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# DNS validation through external-dns (a ClusterDNSZone with spec.externalDNS): one DNSEndpoint
# per order.
- apiGroups: ["externaldns.k8s.io"]
  resources: ["dnsendpoints"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
