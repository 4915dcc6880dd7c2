{{/*
Short name: the value of app.kubernetes.io/name on everything this chart makes.
*/}}
{{- define "kubeinfer.name" -}}
{{- default "kubeinfer-operator" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name, the prefix of every object: <release>-operator when the release name already says "kubeinfer"
(release "kubeinfer" gives "kubeinfer-operator"), <release>-kubeinfer-operator otherwise.
*/}}
{{- define "kubeinfer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if .Values.nameOverride -}}
{{- printf "%s-%s" .Release.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "kubeinfer" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kubeinfer-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubeinfer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector is immutable).
*/}}
{{- define "kubeinfer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeinfer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Standard Helm labels.
*/}}
{{- define "kubeinfer.labels" -}}
{{ include "kubeinfer.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubeinfer
helm.sh/chart: {{ include "kubeinfer.chart" . }}
{{- end -}}

{{- define "kubeinfer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeinfer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
repository[:tag][@digest]; the tag defaults to the chart's appVersion.
*/}}
{{- define "kubeinfer.imageRef" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kubeinfer.operatorImage" -}}
{{- include "kubeinfer.imageRef" (list .Values.image .) -}}
{{- end -}}

{{- define "kubeinfer.serverImage" -}}
{{- include "kubeinfer.imageRef" (list .Values.serverImage .) -}}
{{- end -}}

{{/*
"true" when the operator runs with --leader-election: forced by leaderElection.enabled, else replicaCount > 1.
*/}}
{{- define "kubeinfer.leaderElection" -}}
{{- if kindIs "bool" .Values.leaderElection.enabled -}}
{{- ternary "true" "" .Values.leaderElection.enabled -}}
{{- else if gt (int .Values.replicaCount) 1 -}}
true
{{- end -}}
{{- end -}}
