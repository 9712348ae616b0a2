package main

// The Helm chart (deploy/helm/skysentry): `helm lint` and `helm template` through Helm's own
// Go packages, over the default, GPU and Strimzi values files; every rendered object decoded
// strictly (unknown or duplicate fields fail) with the Kubernetes API types, KEDA's types and
// the Prometheus Operator's; Strimzi's KafkaTopic (Strimzi publishes no Go types) validated
// against a structural OpenAPI schema of its v1beta2 spec (kafkatopic.go) with the
// apiextensions-apiserver's validation and pruning. Then the properties: no secret values in
// ConfigMaps or literal env, every Deployment with probes and resources, replicas and KEDA's
// maxReplicaCount within the input topic's partitions, KEDA's trigger on the processors' own
// group and topic, GPU requests exactly where the values ask, and every metric a rule names
// exported by the code.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartPath   = "deploy/helm/skysentry"
	releaseName = "skysentry"
	namespace   = "skysentry"
	kubeVersion = "v1.33.0"
)

// The values files checked, "" being the chart's defaults alone.
var valuesFiles = []string{"", "values-gpu.yaml", "values-strimzi.yaml"}

type rendered struct {
	kind, name string
	raw        []byte
	obj        runtime.Object // typed, or nil for KafkaTopic (checked as unstructured)
	doc        map[string]any
}

func checkHelm(root string, errs *problems) {
	dir := filepath.Join(root, chartPath)
	ch, err := loader.Load(dir)
	if err != nil {
		errs.add("%s does not load: %v", chartPath, err)
		return
	}
	decoder := strictDecoder()
	exported := exportedMetrics(root, errs)
	for _, vf := range valuesFiles {
		label := "values.yaml"
		vals := map[string]any{}
		if vf != "" {
			label = vf
			v, err := chartutil.ReadValuesFile(filepath.Join(dir, vf))
			if err != nil {
				errs.add("%s/%s: %v", chartPath, vf, err)
				continue
			}
			vals = v.AsMap()
		}
		// helm lint
		kv, _ := chartutil.ParseKubeVersion(kubeVersion)
		linter := lint.AllWithKubeVersion(dir, vals, namespace, kv)
		for _, m := range linter.Messages {
			if m.Severity >= support.WarningSev {
				errs.add("helm lint (%s): %s", label, m.Error())
			}
		}
		// helm template
		manifest, merged, err := renderChart(ch, vals)
		if err != nil {
			errs.add("helm template (%s): %v", label, err)
			continue
		}
		objs := decodeAll(manifest, decoder, label, errs)
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.kind]++
		}
		fmt.Printf("helm: %s: %d object(s): %s\n", label, len(objs), summary(kinds))
		checkProperties(objs, merged, label, exported, errs)
	}
	checkRefusals(ch, errs)
}

func summary(kinds map[string]int) string {
	keys := sortedKeys(kinds)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	return strings.Join(parts, ", ")
}

// renderChart is `helm template skysentry deploy/helm/skysentry -n skysentry -f FILE` with the
// CRD APIs the chart uses declared available (as --api-versions does).
func renderChart(ch *chart.Chart, vals map[string]any) (string, map[string]any, error) {
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.ClientOnly, inst.Replace, inst.IncludeCRDs = true, true, true, true
	inst.ReleaseName, inst.Namespace = releaseName, namespace
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return "", nil, err
	}
	inst.KubeVersion = kv
	inst.APIVersions = chartutil.VersionSet{"keda.sh/v1alpha1", "monitoring.coreos.com/v1", "kafka.strimzi.io/v1beta2"}
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "\n---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	merged, err := chartutil.CoalesceValues(ch, vals)
	if err != nil {
		return "", nil, err
	}
	return b.String(), merged.AsMap(), nil
}

func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientscheme.AddToScheme, kedav1alpha1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			fail(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

func decodeAll(manifest string, decoder runtime.Decoder, label string, errs *problems) []rendered {
	var out []rendered
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		raw, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs.add("helm template (%s): %v", label, err)
			break
		}
		var doc map[string]any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			errs.add("helm template (%s): not YAML: %v", label, err)
			continue
		}
		if len(doc) == 0 {
			continue
		}
		kind, _ := doc["kind"].(string)
		name, _ := dig(doc, "metadata", "name").(string)
		r := rendered{kind: kind, name: name, raw: raw, doc: doc}
		where := fmt.Sprintf("%s (%s) %s/%s", chartPath, label, kind, name)
		if doc["apiVersion"] == "kafka.strimzi.io/v1beta2" && kind == "KafkaTopic" {
			validateKafkaTopic(doc, where, errs)
		} else {
			obj, _, err := decoder.Decode(raw, nil, nil)
			if err != nil {
				errs.add("%s: %v", where, err)
				continue
			}
			r.obj = obj
		}
		out = append(out, r)
	}
	return out
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

// ---------------------------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------------------------

// Keys whose values are secrets wherever they appear in a settings document (the SecretStr
// fields of the settings models and the channels' keys), and the variables that carry them.
var secretKeys = map[string]bool{"password": true, "sasl_password": true, "secret": true, "auth_token": true,
	"token": true, "api_key": true, "urls": true}
var secretEnv = regexp.MustCompile(`(?i)(PASSWORD|SECRET|TOKEN|API_KEY|^REDIS_URL$|__CHANNELS__.*__URLS?$)`)
var userinfo = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^/\s@:]*:([^/\s@]+)@`)
var envReference = regexp.MustCompile(`^\$\([A-Za-z_][A-Za-z0-9_]*\)$`) // $(VAR): Kubernetes fills it in from a Secret

// hasPassword: a URL with a literal password (not a $(VAR) reference to one from a Secret).
func hasPassword(s string) bool {
	for _, m := range userinfo.FindAllStringSubmatch(s, -1) {
		if !envReference.MatchString(m[1]) {
			return true
		}
	}
	return false
}

func checkProperties(objs []rendered, vals map[string]any, label string, exported map[string]bool, errs *problems) {
	settings, _ := dig(vals, "settings").(map[string]any)
	partitions := toInt(dig(settings, "topics", "partitions"))
	fullname := releaseName // release "skysentry" contains the chart's name
	inputTopic := map[string]string{"vision": str(dig(settings, "topics", "frames")), "audio": str(dig(settings, "topics", "audio"))}
	group := map[string]string{"vision": str(dig(settings, "vision_processor", "group_id")),
		"audio": str(dig(settings, "audio_processor", "group_id"))}
	gpuWanted := map[string]bool{}
	for _, m := range []string{"vision", "audio"} {
		if b, _ := dig(vals, "processors", m, "gpu", "enabled").(bool); b {
			gpuWanted[fullname+"-"+m] = true
		}
	}
	seenDeployments := map[string]bool{}
	topicPartitions := map[string]int{}
	for _, o := range objs {
		if o.kind == "KafkaTopic" {
			topicPartitions[str(dig(o.doc, "spec", "topicName"))] = toInt(dig(o.doc, "spec", "partitions"))
		}
	}
	for _, o := range objs {
		where := fmt.Sprintf("%s (%s) %s/%s", chartPath, label, o.kind, o.name)
		switch obj := o.obj.(type) {
		case *corev1.ConfigMap:
			for key, value := range obj.Data {
				checkNoSecrets(value, where+" data."+key, errs)
			}
		case *appsv1.Deployment:
			seenDeployments[obj.Name] = true
			checkPodSpec(obj.Spec.Template.Spec, where, gpuWanted[obj.Name], errs)
			for m := range inputTopic {
				if obj.Name == fullname+"-"+m && obj.Spec.Replicas != nil && int(*obj.Spec.Replicas) > partitions {
					errs.add("%s: replicas %d > %d partitions of %s", where, *obj.Spec.Replicas, partitions, inputTopic[m])
				}
			}
		case *kedav1alpha1.ScaledObject:
			m := strings.TrimPrefix(obj.Spec.ScaleTargetRef.Name, fullname+"-")
			if obj.Spec.MaxReplicaCount == nil || int(*obj.Spec.MaxReplicaCount) > partitions {
				errs.add("%s: maxReplicaCount must be set and at most the %d partitions of %s", where, partitions, inputTopic[m])
			}
			if n, ok := topicPartitions[inputTopic[m]]; ok && obj.Spec.MaxReplicaCount != nil && int(*obj.Spec.MaxReplicaCount) > n {
				errs.add("%s: maxReplicaCount %d > %d partitions of the KafkaTopic %s", where, *obj.Spec.MaxReplicaCount, n, inputTopic[m])
			}
			if len(obj.Spec.Triggers) != 1 || obj.Spec.Triggers[0].Type != "kafka" {
				errs.add("%s: wants one kafka trigger", where)
				continue
			}
			md := obj.Spec.Triggers[0].Metadata
			if md["consumerGroup"] != group[m] || md["topic"] != inputTopic[m] {
				errs.add("%s: trigger reads group %q topic %q; the %s processor uses group %q topic %q", where,
					md["consumerGroup"], md["topic"], m, group[m], inputTopic[m])
			}
			if a := obj.Spec.Advanced; a == nil || a.HorizontalPodAutoscalerConfig == nil ||
				a.HorizontalPodAutoscalerConfig.Behavior == nil || a.HorizontalPodAutoscalerConfig.Behavior.ScaleDown == nil ||
				a.HorizontalPodAutoscalerConfig.Behavior.ScaleDown.StabilizationWindowSeconds == nil ||
				*a.HorizontalPodAutoscalerConfig.Behavior.ScaleDown.StabilizationWindowSeconds < 60 {
				errs.add("%s: scale-down needs a stabilization window of at least 60 s (each change is a rebalance)", where)
			}
		case *monitoringv1.PrometheusRule:
			lagMetric := str(dig(vals, "monitoring", "prometheusRule", "lagMetric"))
			for _, g := range obj.Spec.Groups {
				for _, r := range g.Rules {
					expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr.String())
					if err != nil {
						errs.add("%s: rule %s: %v", where, r.Alert, err)
						continue
					}
					for _, name := range metricNames(expr) {
						if !exported[name] && name != lagMetric {
							errs.add("%s: rule %s uses %s, which no SkySentry service exports", where, r.Alert, name)
						}
					}
				}
			}
		}
	}
	for name := range gpuWanted {
		if !seenDeployments[name] {
			errs.add("%s (%s): the values ask for a GPU Deployment %s that was not rendered", chartPath, label, name)
		}
	}
}

func checkPodSpec(spec corev1.PodSpec, where string, wantGPU bool, errs *problems) {
	gpu := false
	for _, c := range spec.Containers {
		cw := where + " container " + c.Name
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			errs.add("%s: needs a liveness and a readiness probe", cw)
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.String() != "metrics" {
				errs.add("%s: probes are served on the metrics port", cw)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				errs.add("%s: no %s request", cw, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				errs.add("%s: no %s limit", cw, r)
			}
		}
		if q, ok := c.Resources.Limits["nvidia.com/gpu"]; ok && !q.IsZero() {
			gpu = true
		}
		for _, e := range c.Env {
			if e.Value != "" && secretEnv.MatchString(e.Name) {
				errs.add("%s: %s is a secret: take it from a Secret (valueFrom/envFrom), not a literal", cw, e.Name)
			}
			if hasPassword(e.Value) {
				errs.add("%s: %s holds a URL with a password: put it in a Secret", cw, e.Name)
			}
		}
	}
	if gpu != wantGPU {
		errs.add("%s: nvidia.com/gpu requested: %v, but the values ask: %v", where, gpu, wantGPU)
	}
	if gpu && len(spec.Tolerations) == 0 && len(spec.NodeSelector) == 0 {
		errs.add("%s: a GPU pod without a node selector or toleration", where)
	}
}

func checkNoSecrets(value, where string, errs *problems) {
	if hasPassword(value) {
		errs.add("%s: a URL with a password: put it in a Secret", where)
	}
	var doc any
	if yaml.Unmarshal([]byte(value), &doc) != nil {
		return
	}
	var walk func(any, string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				p := path + "." + k
				if secretKeys[k] && x != nil && x != "" {
					errs.add("%s: %s is a secret and must come from a Secret, not a ConfigMap", where, strings.TrimPrefix(p, "."))
				}
				if (strings.HasSuffix(p, ".redis.url") || (strings.Contains(p, ".channels.") && k == "url")) && x != nil && x != "" {
					errs.add("%s: %s is a secret and must come from a Secret, not a ConfigMap", where, strings.TrimPrefix(p, "."))
				}
				walk(x, p)
			}
		case []any:
			for i, x := range v {
				walk(x, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc, "")
}

// checkRefusals: values the chart must refuse (the checks above can fail, and so can the chart).
func checkRefusals(ch *chart.Chart, errs *problems) {
	bad := []map[string]any{
		{"keda": map[string]any{"enabled": true, "maxReplicaCount": 7}}, // > 6 partitions
		{"redis": map[string]any{"url": ""}},                           // no Redis secret
	}
	for _, vals := range bad {
		if _, _, err := renderChart(ch, vals); err == nil {
			errs.add("%s: rendering with %v should fail", chartPath, vals)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// metric names: what the Python services export (prometheus_client objects), what rules use
// ---------------------------------------------------------------------------------------------

var metricDef = regexp.MustCompile(`\b(Counter|Gauge|Histogram|Summary)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

func exportedMetrics(root string, errs *problems) map[string]bool {
	out := map[string]bool{}
	for _, pkg := range []string{"skysentry", "producers", "stream_processors", "alerting", "detectors"} {
		_ = filepath.WalkDir(filepath.Join(root, pkg), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".py") {
				return nil
			}
			data, _ := os.ReadFile(path)
			for _, m := range metricDef.FindAllStringSubmatch(string(data), -1) {
				name := m[2]
				switch m[1] {
				case "Counter": // prometheus_client exposes <name>_total (and _created)
					base := strings.TrimSuffix(name, "_total")
					out[base+"_total"], out[base+"_created"] = true, true
				case "Gauge":
					out[name] = true
				default:
					for _, s := range []string{"_bucket", "_sum", "_count", "_created"} {
						out[name+s] = true
					}
				}
			}
			return nil
		})
	}
	if len(out) == 0 {
		errs.add("found no metric definitions in the Python packages")
	}
	return out
}

func metricNames(expr parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			seen[name] = true
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return 0
}
