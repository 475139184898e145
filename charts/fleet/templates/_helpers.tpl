{{/* The image of every component. */}}
{{- define "fleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Labels of a component: pass (dict "root" $ "component" "gitjob"); a shard's Deployment
also has "name" (gitjob-shard-<id>) and "shard" (its ID, empty for the unsharded one), and its
pods carry Fleet's shard labels. */}}
{{- define "fleet.labels" -}}
app.kubernetes.io/name: {{ .name | default .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: fleet-rs
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- if hasKey . "shard" }}
fleet.cattle.io/shard-id: {{ .shard | quote }}
{{- if not .shard }}
fleet.cattle.io/shard-default: "true"
{{- end }}
{{- end }}
{{- end -}}

{{/* The selector of a component's (or a shard's) pods: distinct per Deployment. */}}
{{- define "fleet.selector" -}}
app.kubernetes.io/name: {{ .name | default .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Fleet's static shards: "" (the unsharded Deployment) and each distinct `shards[].id`, as a
JSON list. */}}
{{- define "fleet.shardIDs" -}}
{{- $ids := list "" }}
{{- range .Values.shards }}
{{- $ids = append $ids (required "shards[].id is required" .id | toString) }}
{{- end }}
{{- $ids | uniq | toJson }}
{{- end -}}

{{/* One shard's Deployment settings, as YAML: pass (dict "root" $ "component" "gitjob"
"replicas" N "shard" ID). Named `<component>-shard-<id>` as in Fleet's chart, with the shard's
nodeSelector. */}}
{{- define "fleet.shard" -}}
component: {{ .component }}
name: {{ if .shard }}{{ printf "%s-shard-%s" .component .shard }}{{ else }}{{ .component }}{{ end }}
replicas: {{ .replicas }}
shard: {{ .shard | quote }}
{{- range .root.Values.shards }}
{{- if and $.shard (eq (toString .id) $.shard) .nodeSelector }}
nodeSelector: {{- toYaml .nodeSelector | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Flags every binary shares. */}}
{{- define "fleet.commonArgs" -}}
- --namespace={{ .root.Release.Namespace }}
- --metrics-bind-address=0.0.0.0:{{ .root.Values.metrics.port }}
- --health-bind-address=0.0.0.0:{{ .root.Values.health.port }}
- --log-format={{ .root.Values.logFormat }}
- --election-lease-duration={{ .root.Values.leaderElection.leaseDuration }}
- --election-renew-deadline={{ .root.Values.leaderElection.renewDeadline }}
- --election-retry-period={{ .root.Values.leaderElection.retryPeriod }}
{{- end -}}

{{/* Pod settings every component shares: identity from the downward API, probes, ports. */}}
{{- define "fleet.podCommon" -}}
env:
  - name: FLEET_ELECTION_IDENTITY
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  # The node's zone spreads dynamic shards over zones.
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
ports:
  - {name: metrics, containerPort: {{ .root.Values.metrics.port }}}
  - {name: health, containerPort: {{ .root.Values.health.port }}}
livenessProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 10
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 5
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* Scheduling every component shares (Karpenter's HA defaults): with more than one replica, no
two replicas on one node (required; preferred when the cluster has a single node, found with
`lookup` at install time), replicas spread over zones, and the priority class. */}}
{{- define "fleet.scheduling" -}}
{{- $v := .root.Values }}
{{- with (.nodeSelector | default $v.nodeSelector) }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity: {{- toYaml $v.affinity | nindent 2 }}
{{- else if and (gt (int .replicas) 1) (ne $v.antiAffinity "none") }}
{{- $nodes := lookup "v1" "Node" "" "" }}
{{- $singleNode := and $nodes $nodes.items (eq (len $nodes.items) 1) }}
affinity:
  podAntiAffinity:
    {{- if and (eq $v.antiAffinity "required") (not $singleNode) }}
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "fleet.selector" . | nindent 12 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {{- include "fleet.selector" . | nindent 14 }}
    {{- end }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if $v.topologySpread }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ $v.zoneSpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels: {{- include "fleet.selector" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "fleet.selector" . | nindent 8 }}
{{- end }}
{{- end -}}

{{- define "fleet.pdb" -}}
{{- if gt (int .replicas) 1 }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name | default .component }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "fleet.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels: {{- include "fleet.selector" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Leases in the release namespace: every leader-elected component. */}}
{{- define "fleet.leaseRole" -}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .component }}-leader-election
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "fleet.labels" . | nindent 4 }}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .component }}-leader-election
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "fleet.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .component }}-leader-election
subjects:
  - kind: ServiceAccount
    name: {{ .component }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}
