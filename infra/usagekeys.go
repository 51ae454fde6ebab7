package main

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/channelbilling/cms/shared/keyprovisioner"
	"github.com/channelbilling/cms/shared/tablestore"
)

// keyOwnerTypes are the entity types that own an API key (usagekeys.Owns): the stream filter
// keeps their items' records only.
var keyOwnerTypes = []string{"platform", "distributor", "partner"}

// usageKeysFilters keep the stream records of channel entity items: inserts and modifications
// by their new image, removals by their old one. The function itself skips modifications that
// keep the tier.
func usageKeysFilters() *[]*map[string]interface{} {
	image := map[string]interface{}{
		"Kind": map[string]interface{}{"S": awslambda.FilterRule_IsEqual(jsii.String(tablestore.EntityKind))},
		"Type": map[string]interface{}{"S": jsii.Strings(keyOwnerTypes...)},
	}
	return &[]*map[string]interface{}{
		awslambda.FilterCriteria_Filter(&map[string]interface{}{
			"eventName": jsii.Strings("INSERT", "MODIFY"),
			"dynamodb":  map[string]interface{}{"NewImage": image},
		}),
		awslambda.FilterCriteria_Filter(&map[string]interface{}{
			"eventName": jsii.Strings("REMOVE"),
			"dynamodb":  map[string]interface{}{"OldImage": image},
		}),
	}
}

// apigatewayArn is the ARN of an API Gateway management path of the stack's region.
func apigatewayArn(path string) *string {
	return jsii.String("arn:" + *awscdk.Aws_PARTITION() + ":apigateway:" + *awscdk.Aws_REGION() + "::" + path)
}

// wireUsageKeys feeds the table's stream (channel entity items only) to usagekeys, gives it the
// key prefix and the usage plans' ids, and lets it manage API keys and the keys of the stack's
// usage plans: list and create keys, enable and delete them, read, add and remove the keys of
// the three plans, nothing else of API Gateway. A batch still failing after 10 retries is
// described in UsageKeysDLQ and alarmed on; a sync (make sync-usage-keys) repairs what it
// missed.
//
// API keys are addressed by id (/apikeys/<id>), not by name, so enabling and deleting cannot be
// narrowed to this stack's keys in IAM; the function deletes only keys named after its prefix
// (and, in a sync, only those whose value it derived).
func wireUsageKeys(s *CmsStack, fn awslambda.Function) {
	s.UsageKeysDLQ = s.deadLetterQueue("UsageKeysDeadLetters", "The usagekeys function gave up on stream records: run make sync-usage-keys, then inspect the queue.")
	s.feedTableStream(fn, s.UsageKeysDLQ, usageKeysFilters())
	fn.AddEnvironment(jsii.String(keyprovisioner.EnvKeyPrefix), jsii.String(s.UsageKeyPrefix), nil)
	var plans, planKeys []*string
	for _, t := range Tiers {
		id := s.UsagePlans[t.Name].UsagePlanId()
		fn.AddEnvironment(jsii.String(keyprovisioner.EnvPlanPrefix+strings.ToUpper(t.Name)), id, nil)
		plans = append(plans, apigatewayArn("/usageplans/"+*id+"/keys"))
		planKeys = append(planKeys, apigatewayArn("/usageplans/"+*id+"/keys/*"))
	}
	// GetApiKeys, CreateApiKey
	allow(fn, []string{"apigateway:GET", "apigateway:POST"}, apigatewayArn("/apikeys"))
	// UpdateApiKey (enable), DeleteApiKey
	allow(fn, []string{"apigateway:PATCH", "apigateway:DELETE"}, apigatewayArn("/apikeys/*"))
	// GetUsagePlanKeys, CreateUsagePlanKey
	allow(fn, []string{"apigateway:GET", "apigateway:POST"}, plans...)
	// GetUsagePlanKey, DeleteUsagePlanKey
	allow(fn, []string{"apigateway:GET", "apigateway:DELETE"}, planKeys...)
}
