{{/* Names of the release's objects. */}}
{{- define "aiquota.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiquota.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "aiquota.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{- define "aiquota.serviceAccountName" -}}{{ include "aiquota.fullname" . }}-manager{{- end -}}
{{- define "aiquota.webhookService" -}}{{ include "aiquota.fullname" . }}-webhook{{- end -}}
{{- define "aiquota.controlService" -}}{{ include "aiquota.fullname" . }}-control{{- end -}}
{{- define "aiquota.certSecret" -}}{{ include "aiquota.fullname" . }}-serving-cert{{- end -}}
{{- define "aiquota.webhookConfig" -}}{{ include "aiquota.fullname" . }}-pod-injector{{- end -}}
{{- define "aiquota.metricsService" -}}{{ include "aiquota.fullname" . }}-metrics{{- end -}}
{{- define "aiquota.metricsScraper" -}}{{ include "aiquota.fullname" . }}-metrics-scraper{{- end -}}
