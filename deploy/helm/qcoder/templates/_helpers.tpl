{{/* Labels on every object. */}}
{{- define "qcoder.labels" -}}
app.kubernetes.io/name: qcoder
app.kubernetes.io/instance: {{ .Values.name }}
app.kubernetes.io/part-of: qcoder
{{- end }}

{{/* The pods that answer the API: the qcoder Deployment, the vLLM Deployment or the LeaderWorkerSet's leaders. */}}
{{- define "qcoder.selectorLabels" -}}
app.kubernetes.io/name: qcoder
app.kubernetes.io/instance: {{ .Values.name }}
app.kubernetes.io/component: server
{{- end }}

{{/* The Secret holding the API key under `api-key`. */}}
{{- define "qcoder.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret }}{{ .Values.apiKey.existingSecret }}{{ else }}{{ .Values.name }}-api-key{{ end }}
{{- end }}

{{/* `vllm serve` arguments after the model, shared by the single-node Deployment and the multi-node leader. */}}
{{- define "qcoder.vllmArgs" -}}
- --host=0.0.0.0
- --port=8000
- --served-model-name={{ .Values.vllm.servedModelName }}
- --tensor-parallel-size={{ .Values.vllm.tensorParallelSize | int }}
- --pipeline-parallel-size={{ .Values.vllm.pipelineParallelSize | int }}
{{- if .Values.vllm.expertParallel }}
- --enable-expert-parallel
{{- end }}
{{- if .Values.vllm.quantization }}
- --quantization={{ .Values.vllm.quantization }}
{{- end }}
- --max-model-len={{ .Values.vllm.maxModelLen | int }}
- --gpu-memory-utilization={{ .Values.vllm.gpuMemoryUtilization }}
- --enable-auto-tool-choice
- --tool-call-parser={{ .Values.vllm.toolCallParser }}
{{- if .Values.vllm.yarn.enabled }}
- '--hf-overrides={"rope_scaling":{"rope_type":"yarn","factor":{{ .Values.vllm.yarn.factor }},"original_max_position_embeddings":{{ .Values.vllm.yarn.originalMaxPositionEmbeddings | int }}}}'
{{- end }}
{{- range .Values.vllm.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* Environment of every vLLM container: the API key, the Hugging Face cache on the PVC, an optional token. */}}
{{- define "qcoder.vllmEnv" -}}
- name: VLLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "qcoder.apiKeySecret" . }}
      key: api-key
- name: HF_HOME
  value: /models/huggingface
{{- if .Values.vllm.hfTokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.vllm.hfTokenSecret }}
      key: token
{{- end }}
{{- end }}

{{/* Volumes of every vLLM pod: the model cache and a large /dev/shm for NCCL. */}}
{{- define "qcoder.vllmVolumes" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ .Values.name }}-models
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.vllm.shmSize }}
{{- end }}

{{- define "qcoder.vllmMounts" -}}
- name: models
  mountPath: /models
- name: dshm
  mountPath: /dev/shm
{{- end }}
