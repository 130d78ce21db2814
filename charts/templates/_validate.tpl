{{/*
Guard rails the schema cannot express: they need several values at once, or the serve config
as built. Each fails `helm install`/`template` with a message that names the value to fix.
*/}}
{{- define "mnist-serve.validate" -}}
{{- $v := .Values }}

{{- /* What the KubeRay operator's validation rejects (ray-operator/controllers/ray/utils/validation.go,
ValidateRayServiceMetadata, ValidateRayServiceSpec, ValidateRayClusterSpec), refused here first: the
operator would only log it and leave the RayService without a cluster. */}}
{{- with $v.nameOverride }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "nameOverride %q is not a DNS-1035 label: it names objects and fills the app.kubernetes.io/name label; use lower-case letters, digits and '-', starting with a letter" .) }}
{{- end }}
{{- end }}
{{- $fullname := include "mnist-serve.fullname" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) }}
{{- fail (printf "the RayService name %q (from the release name, nameOverride or fullnameOverride) is not a DNS-1035 label: KubeRay refuses it; use lower-case letters, digits and '-', starting with a letter" $fullname) }}
{{- end }}
{{- if hasKey $v.podDisruptionBudget "maxUnavailable" }}
{{- fail "podDisruptionBudget.maxUnavailable: Kubernetes reads it against the scale subresource of the pods' owner, and a RayCluster has none: the budget would allow no eviction at all; set podDisruptionBudget.minAvailable (an integer) instead" }}
{{- end }}
{{- with $v.shutdown }}
{{- if le (int .terminationGracePeriodSeconds) (add .proxyDrainSeconds .drainTimeoutSeconds | int) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must exceed shutdown.proxyDrainSeconds + shutdown.drainTimeoutSeconds (%v + %v): Kubernetes kills the pod at its grace period, cutting the drain short and resetting clients' open connections" .terminationGracePeriodSeconds .proxyDrainSeconds .drainTimeoutSeconds) }}
{{- end }}
{{- end }}
{{- if eq $v.upgrade.strategy "NewClusterWithIncrementalUpgrade" }}
{{- /* ValidateClusterUpgradeOptions (v1.7.0 ray-operator/controllers/ray/utils/validation.go). */}}
{{- with $v.upgrade.incremental }}
{{- if not $v.autoscaler.enabled }}
{{- fail "upgrade.strategy NewClusterWithIncrementalUpgrade needs the Ray autoscaler (KubeRay refuses it otherwise): set autoscaler.enabled=true" }}
{{- end }}
{{- if not .gatewayClassName }}
{{- fail "upgrade.incremental.gatewayClassName: NewClusterWithIncrementalUpgrade needs the GatewayClass of the Gateway KubeRay creates (KubeRay refuses it empty)" }}
{{- end }}
{{- if gt (int .stepSizePercent) (int .maxSurgePercent) }}
{{- fail (printf "upgrade.incremental.stepSizePercent (%v) must not exceed maxSurgePercent (%v): KubeRay 1.7 refuses it, since a step would move more traffic than the new cluster has capacity for" .stepSizePercent .maxSurgePercent) }}
{{- end }}
{{- if eq (int .stepSizePercent) 0 }}
{{- fail "upgrade.incremental.stepSizePercent 0 would never move traffic, so the upgrade would never complete (KubeRay accepts it); use 1-100" }}
{{- end }}
{{- end }}
{{- range $what := list "ingress" "httpRoute" }}
{{- if (index $v $what).enabled }}
{{- fail (printf "%s.enabled: with upgrade.strategy NewClusterWithIncrementalUpgrade clients must enter through KubeRay's Gateway <name>-gateway, whose HTTPRoute weights move traffic to the new cluster; the chart's %s points at the serve Service, which stays on the old cluster until the upgrade completes" $what $what) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $v.upgrade.initializingTimeout }}
{{- if regexMatch "^([0.]+(ns|us|ms|s|m|h))+$" . }}
{{- fail (printf "upgrade.initializingTimeout %q: KubeRay requires a positive duration; leave it empty to turn the timeout off" .) }}
{{- end }}
{{- end }}
{{- range $env := $v.env }}
{{- if eq $env.name "RAY_enable_autoscaler_v2" }}
{{- fail "env: RAY_enable_autoscaler_v2 is set by the chart through autoscalerOptions.version (autoscaler.enabled); KubeRay refuses it in the head's env" }}
{{- end }}
{{- if eq $env.name "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S" }}
{{- fail "env: RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S is set by the chart from shutdown.drainTimeoutSeconds; set that instead" }}
{{- end }}
{{- end }}
{{- if eq $v.auth.mode "token" }}
{{- if semverCompare "<2.52.0-0" $v.rayVersion }}
{{- fail (printf "auth.mode token needs Ray 2.52.0 or later (KubeRay refuses it), rayVersion is %q" $v.rayVersion) }}
{{- end }}
{{- if semverCompare "<1.6.0-0" $v.kuberay.operatorVersion }}
{{- fail (printf "auth.mode token needs KubeRay 1.6.0 or later (authOptions is not in the RayService CRD of %s, which would drop it silently and run without auth); set kuberay.operatorVersion to the operator you run" $v.kuberay.operatorVersion) }}
{{- end }}
{{- end }}
{{- if hasKey $v.head.rayStartParams "labels" }}
{{- fail "head.rayStartParams.labels: KubeRay refuses rayStartParams['labels']; the chart sets Ray node labels itself" }}
{{- end }}

{{- with $v.image.tag }}
{{- if not (regexMatch (printf "(^|[^0-9.])%s($|[^0-9.])" (replace "." "\\." $v.rayVersion)) .) }}
{{- fail (printf "image.tag %q does not match rayVersion %q: every Ray container must run the Ray version of the cluster (tags look like %s-ray%s-cpu)" . $v.rayVersion $.Chart.AppVersion $v.rayVersion) }}
{{- end }}
{{- end }}

{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) }}
{{- fail "httpRoute.parentRefs: an enabled HTTPRoute needs at least one Gateway to attach to" }}
{{- end }}

{{- /* GCS fault tolerance: what KubeRay's validation (utils/validation.go) would reject, said here. */}}
{{- $headEnv := list }}
{{- range $v.env }}{{ $headEnv = append $headEnv .name }}{{ end }}
{{- if and $v.ha.enabled (not $v.ha.redis.address) }}
{{- fail "ha.redis.address: GCS fault tolerance (ha.enabled) needs the Redis host:port the GCS stores its state in" }}
{{- end }}
{{- if and (not $v.ha.enabled) (or $v.ha.redis.address $v.ha.redis.passwordSecret.name $v.ha.externalStorageNamespace) }}
{{- fail "ha.redis / ha.externalStorageNamespace are set but ha.enabled is false: set ha.enabled=true to use them" }}
{{- end }}
{{- if and $v.ha.externalStorageNamespace (ne $v.upgrade.strategy "None") }}
{{- fail (printf "ha.externalStorageNamespace: with upgrade.strategy %s the old and the new cluster run side by side and would share one GCS state in Redis; leave it empty (each cluster then uses its UID) or set upgrade.strategy None" $v.upgrade.strategy) }}
{{- end }}
{{- if has "RAY_REDIS_ADDRESS" $headEnv }}
{{- fail "env: RAY_REDIS_ADDRESS is managed by KubeRay; set ha.enabled and ha.redis.address instead" }}
{{- end }}
{{- range $name := list "REDIS_PASSWORD" "REDIS_USERNAME" "RAY_external_storage_namespace" }}
{{- if has $name $headEnv }}
{{- fail (printf "env: %s is managed by KubeRay; use ha.redis.passwordSecret / ha.externalStorageNamespace" $name) }}
{{- end }}
{{- end }}
{{- range $param := list "redis-password" "redis-username" }}
{{- if hasKey $v.head.rayStartParams $param }}
{{- fail (printf "head.rayStartParams.%s: KubeRay refuses it; put the password in a Secret and set ha.redis.passwordSecret" $param) }}
{{- end }}
{{- end }}
{{- if $v.ha.excludeHeadFromServeService }}
{{- $serving := 0 }}
{{- range $v.workerGroups }}{{ $serving = add $serving .minReplicas }}{{ end }}
{{- if eq (int $serving) 0 }}
{{- fail "ha.excludeHeadFromServeService: every worker group has minReplicas 0, so the serve Service could be left with no endpoints; keep at least one worker" }}
{{- end }}
{{- end }}

{{- /* Nodes Ray can place replicas on: the head (when given CPUs) and every worker group. */}}
{{- $nodes := list }}
{{- $headCPUs := include "mnist-serve.rayCPUs" $v.head | int }}
{{- if gt $headCPUs 0 }}
{{- $nodes = append $nodes (dict "name" "head" "cpus" $headCPUs "gpus" 0 "count" 1) }}
{{- end }}
{{- $seen := dict }}
{{- range $g := $v.workerGroups }}
{{- $where := printf "workerGroups[%s]" $g.name }}
{{- if hasKey $seen $g.name }}
{{- fail (printf "workerGroups: the name %q is used twice; group names must be unique" $g.name) }}
{{- end }}
{{- $_ := set $seen $g.name true }}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
{{- fail (printf "%s: minReplicas (%d) is greater than maxReplicas (%d)" $where (int $g.minReplicas) (int $g.maxReplicas)) }}
{{- end }}
{{- if or (lt (int $g.replicas) (int $g.minReplicas)) (gt (int $g.replicas) (int $g.maxReplicas)) }}
{{- fail (printf "%s: replicas (%d) must lie between minReplicas (%d) and maxReplicas (%d)" $where (int $g.replicas) (int $g.minReplicas) (int $g.maxReplicas)) }}
{{- end }}
{{- if hasKey ($g.rayStartParams | default dict) "labels" }}
{{- fail (printf "%s.rayStartParams.labels: KubeRay refuses rayStartParams['labels']; set %s.rayLabels instead" $where $where) }}
{{- end }}
{{- range $key, $value := $g.rayLabels }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $key) }}
{{- fail (printf "%s.rayLabels: %q is not a valid label key (KubeRay refuses it): [prefix/]name, the name at most 63 characters of letters, digits, '-', '_' and '.'" $where $key) }}
{{- end }}
{{- if not (regexMatch "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$" (toString $value)) }}
{{- fail (printf "%s.rayLabels.%s: %q is not a valid label value (KubeRay refuses it): at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit" $where $key (toString $value)) }}
{{- end }}
{{- end }}
{{- if and (hasKey $g "idleTimeoutSeconds") (not $v.autoscaler.enabled) }}
{{- fail (printf "%s.idleTimeoutSeconds needs the autoscaler (v2): KubeRay refuses it when autoscaler.enabled is false" $where) }}
{{- end }}
{{- if $g.readinessProbe }}
{{- fail (printf "%s.readinessProbe: a custom readiness probe replaces KubeRay's serve-aware one (raylet health and the proxy's :8000/-/healthz, ray-operator/controllers/ray/common/pod.go), so a worker whose proxy is down would still receive traffic; remove it" $where) }}
{{- end }}
{{- if hasKey ($g.rayStartParams | default dict) "num-gpus" }}
{{- fail (printf "%s.rayStartParams.num-gpus: set %s.gpus instead; it also requests the GPUs from Kubernetes" $where $where) }}
{{- end }}
{{- $nodes = append $nodes (dict "name" $g.name "cpus" (include "mnist-serve.rayCPUs" $g | int) "gpus" (int $g.gpus) "count" (int $g.maxReplicas)) }}
{{- end }}

{{- /* Every replica must fit on a node of the groups it may use, and all of them in the cluster at its largest. */}}
{{- $demand := dict "cpus" 0.0 "gpus" 0.0 }}
{{- $config := include "mnist-serve.serveConfig" . | fromYaml }}
{{- range $app := $config.applications }}
{{- range $d := $app.deployments }}
{{- $where := printf "serve.deployments.%s" $d.name }}
{{- $override := get $v.serve.deployments $d.name | default dict }}
{{- if and (hasKey $override "num_replicas") $override.autoscaling_config }}
{{- fail (printf "%s: set num_replicas or autoscaling_config, not both" $where) }}
{{- end }}
{{- $replicas := $d.num_replicas | default 1 }}
{{- with $d.autoscaling_config }}
{{- /* hasKey, not `default`: min_replicas 0 (scale to zero) must stay 0. */}}
{{- $min := ternary .min_replicas 1 (hasKey . "min_replicas") | int }}
{{- $max := ternary .max_replicas 1 (hasKey . "max_replicas") | int }}
{{- if gt $min $max }}
{{- fail (printf "%s.autoscaling_config: min_replicas (%d) is greater than max_replicas (%d)" $where $min $max) }}
{{- end }}
{{- if hasKey . "initial_replicas" }}
{{- if or (lt (int .initial_replicas) $min) (gt (int .initial_replicas) $max) }}
{{- fail (printf "%s.autoscaling_config: initial_replicas (%d) must lie between min_replicas (%d) and max_replicas (%d)" $where (int .initial_replicas) $min $max) }}
{{- end }}
{{- end }}
{{- $replicas = $max }}
{{- end }}
{{- $opts := $d.ray_actor_options | default dict }}
{{- $cpus := float64 (ternary $opts.num_cpus 1 (hasKey $opts "num_cpus")) }}
{{- $gpus := float64 ($opts.num_gpus | default 0) }}
{{- if and (gt $gpus 1.0) (ne $gpus (floor $gpus)) }}
{{- fail (printf "%s.ray_actor_options.num_gpus: %v is not allowed; Ray shares GPUs only in fractions below 1, above that whole GPUs" $where $gpus) }}
{{- end }}
{{- $eligible := $nodes }}
{{- with $override.workerGroup }}
{{- $eligible = list }}
{{- range $n := $nodes }}
{{- if eq $n.name $override.workerGroup }}
{{- $eligible = append $eligible $n }}
{{- end }}
{{- end }}
{{- if not $eligible }}
{{- fail (printf "%s.workerGroup: there is no worker group %q" $where .) }}
{{- end }}
{{- end }}
{{- $maxCPUs := 0 }}
{{- $maxGPUs := 0 }}
{{- range $n := $eligible }}
{{- $maxCPUs = max $maxCPUs $n.cpus }}
{{- $maxGPUs = max $maxGPUs $n.gpus }}
{{- end }}
{{- $pool := ternary (printf "worker group %q" ($override.workerGroup | default "")) "any worker group" (hasKey $override "workerGroup") }}
{{- if and (gt $gpus 0.0) (eq $maxGPUs 0) }}
{{- fail (printf "%s: replicas ask for num_gpus %v but %s has no GPUs; give a worker group gpus > 0" $where $gpus $pool) }}
{{- end }}
{{- if gt $gpus (float64 $maxGPUs) }}
{{- fail (printf "%s: a replica asks for num_gpus %v but the nodes of %s have at most %d GPUs: it can never be placed" $where $gpus $pool $maxGPUs) }}
{{- end }}
{{- if gt $cpus (float64 $maxCPUs) }}
{{- fail (printf "%s: a replica asks for num_cpus %v but the nodes of %s have at most %d CPUs (from rayStartParams num-cpus or the CPU limit): it can never be placed" $where $cpus $pool $maxCPUs) }}
{{- end }}
{{- $_ := set $demand "cpus" (addf $demand.cpus (mulf $cpus $replicas)) }}
{{- $_ := set $demand "gpus" (addf $demand.gpus (mulf $gpus $replicas)) }}
{{- end }}
{{- end }}
{{- $capacity := dict "cpus" 0 "gpus" 0 }}
{{- range $n := $nodes }}
{{- $_ := set $capacity "cpus" (add $capacity.cpus (mul $n.cpus $n.count)) }}
{{- $_ := set $capacity "gpus" (add $capacity.gpus (mul $n.gpus $n.count)) }}
{{- end }}
{{- range $resource := list "cpus" "gpus" }}
{{- if gt (get $demand $resource) (float64 (get $capacity $resource)) }}
{{- fail (printf "serve.deployments: at their largest the replicas need %v %s but the cluster at its largest (maxReplicas of every group) has %d: raise maxReplicas or lower the replicas" (get $demand $resource) (upper $resource | trimSuffix "S") (get $capacity $resource)) }}
{{- end }}
{{- end }}
{{- end }}
