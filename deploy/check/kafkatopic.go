package main

// Strimzi's KafkaTopic (kafka.strimzi.io/v1beta2). Strimzi publishes no Go types, and its CRD
// YAML is not on any registry this build can use (the io.strimzi:api jar on Maven Central
// holds Java classes, no CRD files), so the schema below is written here from Strimzi's
// KafkaTopic API reference: the fields of spec and status, with the bounds the CRD states.
// It is checked as the API server checks a custom resource: the structural-schema rules, then
// pruning (an unknown field is reported, not silently dropped) and OpenAPI validation.

import (
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

func kafkaTopicSchemaV1() apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	return apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"apiVersion": str,
			"kind":       str,
			"metadata":   {Type: "object"},
			"spec": {
				Type:        "object",
				Description: "The specification of the topic.",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"topicName":  {Type: "string", Description: "The name of the topic; defaults to metadata.name."},
					"partitions": {Type: "integer", Minimum: ptr.To(1.0), Description: "The number of partitions."},
					"replicas":   {Type: "integer", Minimum: ptr.To(1.0), Maximum: ptr.To(32767.0), Description: "Replication factor."},
					"config": {Type: "object", XPreserveUnknownFields: ptr.To(true),
						Description: "The topic configuration (Kafka topic configs)."},
				},
			},
			"status": {Type: "object", XPreserveUnknownFields: ptr.To(true)},
		},
	}
}

var kafkaTopicValidator validation.SchemaCreateValidator
var kafkaTopicStructural *structuralschema.Structural

func validateKafkaTopic(doc map[string]any, where string, errs *problems) {
	if kafkaTopicStructural == nil {
		v1 := kafkaTopicSchemaV1()
		internal := &apiextensions.JSONSchemaProps{}
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(&v1, internal, nil); err != nil {
			fail(err)
		}
		s, err := structuralschema.NewStructural(internal)
		if err != nil {
			fail(err)
		}
		if list := structuralschema.ValidateStructural(field.NewPath("schema"), s); len(list) > 0 {
			fail(list.ToAggregate())
		}
		validator, _, err := validation.NewSchemaValidator(internal)
		if err != nil {
			fail(err)
		}
		kafkaTopicStructural, kafkaTopicValidator = s, validator
	}
	spec, _ := doc["spec"].(map[string]any)
	if spec == nil {
		errs.add("%s: no spec", where)
		return
	}
	labels, _ := dig(doc, "metadata", "labels").(map[string]any)
	if labels["strimzi.io/cluster"] == nil {
		errs.add("%s: no strimzi.io/cluster label: no topic operator would pick it up", where)
	}
	copyDoc := deepCopyJSON(doc)
	if unknown := pruning.PruneWithOptions(copyDoc, kafkaTopicStructural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(unknown) > 0 {
		for _, u := range unknown {
			errs.add("%s: unknown field %q", where, u)
		}
	}
	for _, e := range validation.ValidateCustomResource(nil, doc, kafkaTopicValidator) {
		errs.add("%s: %v", where, e)
	}
}

func deepCopyJSON(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = deepCopyValue(x)
	}
	return out
}

func deepCopyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopyJSON(x)
	case []any:
		out := make([]any, len(x))
		for i, y := range x {
			out[i] = deepCopyValue(y)
		}
		return out
	}
	return v
}
