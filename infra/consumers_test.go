package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// getAttID resolves a token such as q.QueueArn() ({"Fn::GetAtt": [id, attr]}) to the logical id.
func getAttID(t *testing.T, token *string) string {
	t.Helper()
	m, ok := testStack.Resolve(token).(map[string]any)
	if !ok || m["Fn::GetAtt"] == nil {
		t.Fatalf("token %s does not resolve to a GetAtt", *token)
	}
	return m["Fn::GetAtt"].([]any)[0].(string)
}

func fnID(t *testing.T, name string) string {
	t.Helper()
	return logicalID(t, testStack.Functions[name].FunctionName())
}

func roleID(t *testing.T, name string) string {
	t.Helper()
	return logicalID(t, testStack.Functions[name].Role().RoleName())
}

// mappingOf returns the event source mapping of a function (exactly one expected).
func mappingOf(t *testing.T, name string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, m := range resources("AWS::Lambda::EventSourceMapping") {
		if mentions(props(m)["FunctionName"], fnID(t, name)) {
			found = append(found, props(m))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s has %d event source mappings, want 1", name, len(found))
	}
	return found[0]
}

// resourcesOf returns the resources (as JSON) of a function's statements allowing action.
func resourcesOf(t *testing.T, name, action string) []string {
	t.Helper()
	var out []string
	for _, s := range allowStatements(roleID(t, name)) {
		if slices.Contains(strs(s["Action"]), action) {
			for _, r := range list(s["Resource"]) {
				b, _ := json.Marshal(r)
				out = append(out, string(b))
			}
		}
	}
	return out
}

func TestUsageConsumersAreWired(t *testing.T) {
	queue, dlq := getAttID(t, testStack.UsageQueue.QueueArn()), getAttID(t, testStack.UsageDLQ.QueueArn())
	m := mappingOf(t, "usagequeue")
	if !mentions(m["EventSourceArn"], queue) || !slices.Equal(strs(m["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) {
		t.Errorf("usagequeue mapping: %v", m)
	}
	vis := props(resources("AWS::SQS::Queue")[queue])["VisibilityTimeout"]
	if v, _ := vis.(float64); v < 6*Functions["usagequeue"].Timeout.Seconds() {
		t.Errorf("usage queue visibility %v s, want at least 6 x the consumer's %v", vis, Functions["usagequeue"].Timeout)
	}

	m = mappingOf(t, "usagestream")
	if !mentions(m["EventSourceArn"], getAttID(t, testStack.Stream.StreamArn())) || !slices.Equal(strs(m["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) ||
		m["BisectBatchOnFunctionError"] != true || m["MaximumRetryAttempts"] == nil || !mentions(m["DestinationConfig"], dlq) {
		t.Errorf("usagestream mapping: %v", m)
	}

	for _, name := range []string{"usagequeue", "usagestream"} {
		rs := resourcesOf(t, name, "sqs:SendMessage")
		if len(rs) == 0 {
			t.Errorf("%s cannot send invalid records to the usage DLQ", name)
		}
		for _, r := range rs {
			if !strings.Contains(r, `"`+dlq+`"`) {
				t.Errorf("%s may send to %s: only the usage DLQ", name, r)
			}
		}
	}
}

func TestUsageFiles(t *testing.T) {
	bucketID := getAttID(t, testStack.Usage.BucketArn())
	bucket := resources("AWS::S3::Bucket")[bucketID]
	fn := fnID(t, "usagefiles")
	notif, _ := props(bucket)["NotificationConfiguration"].(map[string]any)
	lcs := list(notif["LambdaConfigurations"])
	if len(lcs) != 1 || notif["QueueConfigurations"] != nil || notif["TopicConfigurations"] != nil {
		t.Fatalf("usage bucket notifications: %v", notif)
	}
	lc := lcs[0].(map[string]any)
	rules := list(lc["Filter"].(map[string]any)["S3Key"].(map[string]any)["Rules"])
	if !mentions(lc["Function"], fn) || lc["Event"] != "s3:ObjectCreated:*" || len(rules) != 1 ||
		rules[0].(map[string]any)["Name"] != "prefix" || rules[0].(map[string]any)["Value"] != usageFilePrefix {
		t.Errorf("usage bucket notification: %v", lc)
	}
	if n := len(resources("Custom::S3BucketNotifications")); n != 0 {
		t.Errorf("%d notification custom resources (their role has s3:PutBucketNotification on *)", n)
	}

	// The invoke permission names the bucket by its fixed name, and the bucket waits for it.
	name, _ := json.Marshal(testStack.Resolve(testStack.UsageBucketName))
	if got, _ := json.Marshal(props(bucket)["BucketName"]); string(got) != string(name) {
		t.Errorf("usage bucket name %s, the stack says %s", got, name)
	}
	var perm string
	for id, p := range resources("AWS::Lambda::Permission") {
		pp := props(p)
		if pp["Principal"] != "s3.amazonaws.com" {
			continue
		}
		if perm != "" || !mentions(pp["FunctionName"], fn) || pp["SourceAccount"] == nil {
			t.Errorf("S3 invoke permission %s: %v", id, pp)
		}
		perm = id
		arn, _ := json.Marshal(testStack.Resolve(jsii.String("arn:" + *awscdk.Aws_PARTITION() + ":s3:::" + *testStack.UsageBucketName)))
		if b, _ := json.Marshal(pp["SourceArn"]); string(b) != string(arn) {
			t.Errorf("S3 invoke permission source %s, want the usage bucket %s", b, arn)
		}
	}
	if perm == "" || !slices.Contains(strs(bucket["DependsOn"]), perm) {
		t.Errorf("usage bucket DependsOn %v, want the S3 invoke permission %q", bucket["DependsOn"], perm)
	}

	for action, suffix := range map[string]string{"s3:GetObject": "/" + usageFilePrefix + "*", "s3:PutObject": "/" + usageReportPrefix + "*"} {
		rs := resourcesOf(t, "usagefiles", action)
		if len(rs) != 1 || !strings.HasSuffix(rs[0], `"`+suffix+`"]]}`) || !strings.Contains(rs[0], ":s3:::") {
			t.Errorf("usagefiles %s on %v, want the usage bucket's %s", action, rs, suffix)
		}
	}
	// Nobody else touches the usage bucket.
	for name := range testStack.Functions {
		if name == "usagefiles" || name == "billingworker" {
			continue
		}
		for _, s := range allowStatements(roleID(t, name)) {
			for _, a := range strs(s["Action"]) {
				if strings.HasPrefix(a, "s3:") {
					t.Errorf("%s may %s", name, a)
				}
			}
		}
	}
}

func TestBillingWorkerAndSchedule(t *testing.T) {
	queue, dlq := getAttID(t, testStack.BillingQueue.QueueArn()), getAttID(t, testStack.BillingDLQ.QueueArn())
	q := props(resources("AWS::SQS::Queue")[queue])
	if rp, _ := q["RedrivePolicy"].(map[string]any); rp["maxReceiveCount"] != 5.0 || !mentions(rp["deadLetterTargetArn"], dlq) {
		t.Errorf("billing queue redrive policy %v", q["RedrivePolicy"])
	}
	if v, _ := q["VisibilityTimeout"].(float64); v < 6*Functions["billingworker"].Timeout.Seconds() {
		t.Errorf("billing queue visibility %v s, want at least 6 x the worker's %v", q["VisibilityTimeout"], Functions["billingworker"].Timeout)
	}
	m := mappingOf(t, "billingworker")
	if !mentions(m["EventSourceArn"], queue) || m["BatchSize"] != 10.0 || !slices.Equal(strs(m["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) {
		t.Errorf("billingworker mapping: %v", m)
	}
	for _, name := range []string{"billing", "billingworker"} {
		rs := resourcesOf(t, name, "sqs:SendMessage")
		if len(rs) == 0 {
			t.Errorf("%s cannot send to the billing queue", name)
		}
		for _, r := range rs {
			if !strings.Contains(r, `"`+queue+`"`) {
				t.Errorf("%s may send to %s: only the billing queue", name, r)
			}
		}
	}
	exports := getAttID(t, testStack.Exports.BucketArn())
	if rs := resourcesOf(t, "billingworker", "s3:PutObject"); len(rs) != 1 || !strings.Contains(rs[0], `"`+exports+`"`) || !strings.HasSuffix(rs[0], `"/`+exportsPrefix+`*"]]}`) {
		t.Errorf("billingworker s3:PutObject on %v, want the exports bucket's exports/*", rs)
	}
	if rs := resourcesOf(t, "billingworker", "s3:AbortMultipartUpload"); len(rs) != 1 || !strings.Contains(rs[0], `"`+exports+`"`) || !strings.HasSuffix(rs[0], `"/`+exportsPrefix+`*"]]}`) {
		t.Errorf("billingworker s3:AbortMultipartUpload on %v, want the exports bucket's exports/*", rs)
	}
	// Only the billing functions and the schedule send to the billing queue.
	for name := range testStack.Functions {
		if name == "billing" || name == "billingworker" {
			continue
		}
		for _, r := range resourcesOf(t, name, "sqs:SendMessage") {
			if strings.Contains(r, `"`+queue+`"`) {
				t.Errorf("%s may send to the billing queue", name)
			}
		}
	}

	role := logicalID(t, testStack.BillingScheduleRole.RoleName())
	try(t, "the monthly schedule sends {\"kind\":\"start\"} to the billing queue", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::Scheduler::Schedule"), map[string]any{
			"ScheduleExpression":         "cron(5 0 1 * ? *)",
			"ScheduleExpressionTimezone": "UTC",
			"FlexibleTimeWindow":         map[string]any{"Mode": "OFF"},
			"State":                      "ENABLED",
			"Target": assertions.Match_ObjectLike(&map[string]any{
				"Arn":     map[string]any{"Fn::GetAtt": []any{queue, "Arn"}},
				"RoleArn": map[string]any{"Fn::GetAtt": []any{role, "Arn"}},
				"Input":   assertions.Match_SerializedJson(map[string]any{"kind": "start"}),
			}),
		})
	})
	try(t, "one schedule", func() { testTmpl.ResourceCountIs(jsii.String("AWS::Scheduler::Schedule"), jsii.Number(1)) })
	stmts := allowStatements(role)
	if len(stmts) != 1 || !slices.Equal(strs(stmts[0]["Action"]), []string{"sqs:SendMessage"}) || !mentions(stmts[0]["Resource"], queue) {
		t.Errorf("the schedule's role may: %v", stmts)
	}
	trust, _ := json.Marshal(props(resources("AWS::IAM::Role")[role])["AssumeRolePolicyDocument"])
	if !strings.Contains(string(trust), `"scheduler.amazonaws.com"`) || !strings.Contains(string(trust), "aws:SourceAccount") {
		t.Errorf("the schedule's role trusts %s", trust)
	}
}

// Every function finds the stack's queues, stream and buckets in its environment, by URL or name.
func TestResourcesInTheEnvironment(t *testing.T) {
	want := map[string]string{
		"CMS_USAGE_QUEUE":    logicalID(t, testStack.UsageQueue.QueueUrl()),
		"CMS_USAGE_DLQ":      logicalID(t, testStack.UsageDLQ.QueueUrl()),
		"CMS_USAGE_STREAM":   logicalID(t, testStack.Stream.StreamName()),
		"CMS_BILLING_QUEUE":  logicalID(t, testStack.BillingQueue.QueueUrl()),
		"CMS_EXPORTS_BUCKET": logicalID(t, testStack.Exports.BucketName()),
	}
	usageBucket, _ := json.Marshal(testStack.Resolve(testStack.UsageBucketName))
	for name := range testStack.Functions {
		env := props(resources("AWS::Lambda::Function")[fnID(t, name)])["Environment"].(map[string]any)["Variables"].(map[string]any)
		for k, id := range want {
			if !mentions(env[k], id) {
				t.Errorf("%s: %s is %v, not the stack's %s", name, k, env[k], id)
			}
		}
		if got, _ := json.Marshal(env["CMS_USAGE_BUCKET"]); string(got) != string(usageBucket) {
			t.Errorf("%s: CMS_USAGE_BUCKET is %s, want %s", name, got, usageBucket)
		}
	}
}
