package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/channelbilling/cms/shared/keyprovisioner"
)

func TestUsageKeysFunction(t *testing.T) {
	fn := fnID(t, "usagekeys")
	dlq := getAttID(t, testStack.UsageKeysDLQ.QueueArn())
	image := map[string]any{"Kind": map[string]any{"S": []any{"entity"}}, "Type": map[string]any{"S": []any{"platform", "distributor", "partner"}}}
	try(t, "table stream, channel entity items only", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), map[string]any{
			"FunctionName":               map[string]any{"Ref": fn},
			"EventSourceArn":             map[string]any{"Fn::GetAtt": []any{logicalID(t, testStack.Table.TableName()), "StreamArn"}},
			"StartingPosition":           "TRIM_HORIZON",
			"FunctionResponseTypes":      []any{"ReportBatchItemFailures"},
			"BisectBatchOnFunctionError": true,
			"MaximumRetryAttempts":       10,
			"DestinationConfig":          map[string]any{"OnFailure": map[string]any{"Destination": map[string]any{"Fn::GetAtt": []any{dlq, "Arn"}}}},
			"FilterCriteria": map[string]any{"Filters": []any{
				map[string]any{"Pattern": assertions.Match_SerializedJson(map[string]any{"eventName": []any{"INSERT", "MODIFY"}, "dynamodb": map[string]any{"NewImage": image}})},
				map[string]any{"Pattern": assertions.Match_SerializedJson(map[string]any{"eventName": []any{"REMOVE"}, "dynamodb": map[string]any{"OldImage": image}})},
			}},
		})
	})

	// Its environment names the stack's three usage plans and the stack's key prefix.
	env := props(resources("AWS::Lambda::Function")[fn])["Environment"].(map[string]any)["Variables"].(map[string]any)
	if env[keyprovisioner.EnvKeyPrefix] != "Test-usage-" {
		t.Errorf("%s = %v, want Test-usage-", keyprovisioner.EnvKeyPrefix, env[keyprovisioner.EnvKeyPrefix])
	}
	var plans []string
	for _, tier := range Tiers {
		id := logicalID(t, testStack.UsagePlans[tier.Name].UsagePlanId())
		plans = append(plans, id)
		if got := env[keyprovisioner.EnvPlanPrefix+strings.ToUpper(tier.Name)]; !mentions(got, id) {
			t.Errorf("%s%s = %v, want the %s usage plan %s", keyprovisioner.EnvPlanPrefix, strings.ToUpper(tier.Name), got, tier.Name, id)
		}
	}

	// API Gateway: exactly these actions on exactly these paths.
	got := map[string][]string{} // action -> resources
	for _, s := range allowStatements(roleID(t, "usagekeys")) {
		for _, a := range strs(s["Action"]) {
			if !strings.HasPrefix(a, "apigateway:") {
				continue
			}
			for _, r := range list(s["Resource"]) {
				b, _ := json.Marshal(r)
				got[a] = append(got[a], pathOf(string(b)))
			}
		}
	}
	planPaths := func(suffix string) []string {
		var out []string
		for _, id := range plans {
			out = append(out, "/usageplans/{"+id+"}/keys"+suffix)
		}
		return out
	}
	want := map[string][]string{
		"apigateway:GET":    append([]string{"/apikeys"}, append(planPaths(""), planPaths("/*")...)...),
		"apigateway:POST":   append([]string{"/apikeys"}, planPaths("")...),
		"apigateway:PATCH":  {"/apikeys/*"},
		"apigateway:DELETE": append([]string{"/apikeys/*"}, planPaths("/*")...),
	}
	for a := range want {
		slices.Sort(want[a])
		slices.Sort(got[a])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("usagekeys may\n %v\nwant\n %v", got, want)
	}
	// Nobody else touches API Gateway.
	for name := range testStack.Functions {
		if name == "usagekeys" {
			continue
		}
		for _, s := range allowStatements(roleID(t, name)) {
			for _, a := range strs(s["Action"]) {
				if strings.HasPrefix(a, "apigateway:") || strings.HasPrefix(a, "execute-api:") {
					t.Errorf("%s may %s", name, a)
				}
			}
		}
	}
	for _, a := range resources("AWS::CloudWatch::Alarm") {
		if p := props(a); p["MetricName"] == "ApproximateNumberOfMessagesVisible" && mentions(p["Dimensions"], dlq) {
			return
		}
	}
	t.Errorf("no alarm on the depth of the usagekeys dead-letter queue")
}

// pathOf turns a synthesized apigateway ARN ({"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},
// ":apigateway:",{"Ref":"AWS::Region"},"::/usageplans/",{"Ref":"PlanX"},"/keys"]]}) into its
// path with references in braces: /usageplans/{PlanX}/keys.
func pathOf(arnJSON string) string {
	var v struct {
		Join []json.RawMessage `json:"Fn::Join"`
	}
	if err := json.Unmarshal([]byte(arnJSON), &v); err != nil || len(v.Join) != 2 {
		return arnJSON
	}
	var parts []any
	_ = json.Unmarshal(v.Join[1], &parts)
	var b strings.Builder
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b.WriteString(p)
		case map[string]any:
			b.WriteString("{" + fmt.Sprint(p["Ref"]) + "}")
		}
	}
	s := b.String()
	if i := strings.Index(s, "::/"); i >= 0 && strings.HasPrefix(s, "arn:{AWS::Partition}:apigateway:{AWS::Region}") {
		return s[i+2:]
	}
	return s
}
