{{- define "sprintops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sprintops.serviceAccountName" -}}
{{- default (include "sprintops.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "sprintops.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sprintops.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The Secret holding endpoints.yaml, or nothing when no endpoint is configured. */ -}}
{{- define "sprintops.endpointsSecret" -}}
{{- if .Values.endpoints.existingSecret -}}
{{- .Values.endpoints.existingSecret -}}
{{- else if or .Values.endpoints.gates .Values.endpoints.receivers -}}
{{- printf "%s-endpoints" (include "sprintops.fullname" .) -}}
{{- end -}}
{{- end -}}
