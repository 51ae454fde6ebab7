package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// One synthesis serves every test: it takes seconds (jsii runs the CDK in Node.js).
var (
	testStack *CmsStack
	testTmpl  assertions.Template
	testJSON  map[string]any
)

func TestMain(m *testing.M) {
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "infra tests:", err)
		code = 1
	}
	jsii.Close()
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dist, err := os.MkdirTemp("", "cms-infra-dist-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dist)
	if err := fakeDist(dist); err != nil {
		return 0, err
	}
	out, err := os.MkdirTemp("", "cms-infra-out-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(out)
	a := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(out)})
	testStack, err = NewCmsStack(a, "Test", &CmsStackProps{DistDir: dist})
	if err != nil {
		return 0, err
	}
	testTmpl = assertions.Template_FromStack(testStack.Stack, nil)
	testJSON = *testTmpl.ToJSON()
	return m.Run(), nil
}

// fakeDist writes a placeholder bootstrap per function, as make build would.
func fakeDist(dir string) error {
	for name := range Functions {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name, "bootstrap"), []byte("placeholder "+name), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// try turns a failed CDK assertion (a panic across jsii) into a test error.
func try(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

// resources returns the template's resources of one type, by logical id.
func resources(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range testJSON["Resources"].(map[string]any) {
		if res := r.(map[string]any); res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func props(res map[string]any) map[string]any {
	p, _ := res["Properties"].(map[string]any)
	return p
}

// logicalID resolves a token such as fn.FunctionName() ({"Ref": id}) to the logical id.
func logicalID(t *testing.T, token *string) string {
	t.Helper()
	ref, ok := testStack.Resolve(token).(map[string]any)
	if !ok || ref["Ref"] == nil {
		t.Fatalf("token %s does not resolve to a Ref", *token)
	}
	return ref["Ref"].(string)
}

func mentions(v any, id string) bool {
	b, _ := json.Marshal(v)
	return strings.Contains(string(b), `"`+id+`"`)
}

func strs(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, strs(x)...)
		}
		return out
	}
	return nil
}

func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func TestTable(t *testing.T) {
	try(t, "table properties", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::DynamoDB::Table"), map[string]any{
			"KeySchema": []any{
				map[string]any{"AttributeName": "PK", "KeyType": "HASH"},
				map[string]any{"AttributeName": "SK", "KeyType": "RANGE"},
			},
			"AttributeDefinitions": assertions.Match_ArrayWith(&[]any{
				map[string]any{"AttributeName": "PK", "AttributeType": "S"},
				map[string]any{"AttributeName": "SK", "AttributeType": "S"},
				map[string]any{"AttributeName": "GSI1PK", "AttributeType": "S"},
				map[string]any{"AttributeName": "GSI1SK", "AttributeType": "S"},
			}),
			"BillingMode":                      "PAY_PER_REQUEST",
			"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
			"DeletionProtectionEnabled":        true,
			"TimeToLiveSpecification":          map[string]any{"AttributeName": "TTL", "Enabled": true},
			"StreamSpecification":              map[string]any{"StreamViewType": "NEW_AND_OLD_IMAGES"},
			"GlobalSecondaryIndexes": []any{map[string]any{
				"IndexName": "GSI1",
				"KeySchema": []any{
					map[string]any{"AttributeName": "GSI1PK", "KeyType": "HASH"},
					map[string]any{"AttributeName": "GSI1SK", "KeyType": "RANGE"},
				},
				"Projection": map[string]any{"ProjectionType": "ALL"},
			}},
		})
	})
	try(t, "table retained", func() {
		testTmpl.HasResource(jsii.String("AWS::DynamoDB::Table"), map[string]any{
			"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
		})
	})
	try(t, "one table", func() { testTmpl.ResourceCountIs(jsii.String("AWS::DynamoDB::Table"), jsii.Number(1)) })
}

func TestFunctionsAreArm64ProvidedAL2023(t *testing.T) {
	fns := resources("AWS::Lambda::Function")
	if len(fns) != len(Functions) {
		t.Errorf("%d functions in the template, %d in Functions", len(fns), len(Functions))
	}
	for id, fn := range fns {
		p := props(fn)
		if p["Runtime"] != "provided.al2023" || !slices.Equal(strs(p["Architectures"]), []string{"arm64"}) || p["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v, architectures %v, handler %v", id, p["Runtime"], p["Architectures"], p["Handler"])
		}
		if _, ok := p["LoggingConfig"].(map[string]any)["LogGroup"]; !ok {
			t.Errorf("%s: no log group of its own", id)
		}
		env := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		if !mentions(env["CMS_TABLE"], logicalID(t, testStack.Table.TableName())) {
			t.Errorf("%s: CMS_TABLE is %v, not the stack's table", id, env["CMS_TABLE"])
		}
	}
	for name, fn := range testStack.Functions {
		p := props(resources("AWS::Lambda::Function")[logicalID(t, fn.FunctionName())])
		if got := int(p["MemorySize"].(float64)); got != Functions[name].MemoryMB {
			t.Errorf("%s: %d MB, want %d", name, got, Functions[name].MemoryMB)
		}
	}
	if Functions["auth"].MemoryMB < 1024 {
		t.Errorf("auth has %d MB: argon2id needs 1,024 MB or more", Functions["auth"].MemoryMB)
	}
	for _, lg := range resources("AWS::Logs::LogGroup") {
		if props(lg)["RetentionInDays"] == nil {
			t.Errorf("a log group keeps logs forever")
		}
	}
}

// method is an API Gateway method as the template defines it.
type method struct {
	fn, authType, authorizer string
	apiKey                   bool
}

// apiMethods rebuilds "METHOD /path" -> method from the template's resources and methods.
func apiMethods(t *testing.T) map[string]method {
	t.Helper()
	res := resources("AWS::ApiGateway::Resource")
	var pathOf func(ref any) string
	pathOf = func(ref any) string {
		m := ref.(map[string]any)
		if _, ok := m["Fn::GetAtt"]; ok {
			return "" // the root resource
		}
		r := props(res[m["Ref"].(string)])
		return pathOf(r["ParentId"]) + "/" + r["PathPart"].(string)
	}
	fnOf := map[string]string{}
	for name, fn := range testStack.Functions {
		fnOf[logicalID(t, fn.FunctionName())] = name
	}
	out := map[string]method{}
	for id, m := range resources("AWS::ApiGateway::Method") {
		p := props(m)
		key := p["HttpMethod"].(string) + " " + pathOf(p["ResourceId"])
		var got method
		for lid, name := range fnOf {
			if mentions(p["Integration"], lid) {
				got.fn = name
			}
		}
		if in := p["Integration"].(map[string]any); in["Type"] != "AWS_PROXY" {
			t.Errorf("%s (%s): integration %v, want AWS_PROXY", key, id, in["Type"])
		}
		got.authType, _ = p["AuthorizationType"].(string)
		if a, ok := p["AuthorizerId"].(map[string]any); ok {
			got.authorizer, _ = a["Ref"].(string)
		}
		got.apiKey, _ = p["ApiKeyRequired"].(bool)
		if _, dup := out[key]; dup {
			t.Errorf("%s defined twice", key)
		}
		out[key] = got
	}
	return out
}

func TestEveryRouteIsAMethodAndBack(t *testing.T) {
	methods := apiMethods(t)
	authorizer := logicalID(t, testStack.Authorizer.AuthorizerId())
	routes := app.AllRoutes()
	want := map[string]httpapi.Route{}
	for _, r := range routes {
		want[r.Method+" "+r.Path] = r
	}
	for key, r := range want {
		m, ok := methods[key]
		switch {
		case !ok:
			t.Errorf("route %s (%s) has no method in the API", key, r.Function)
		case m.fn != r.Function:
			t.Errorf("%s: integrated with function %q, the code says %q", key, m.fn, r.Function)
		case r.Public && (m.authType != "NONE" || m.authorizer != ""):
			t.Errorf("%s is public but has authorization %s %s", key, m.authType, m.authorizer)
		case !r.Public && (m.authType != "CUSTOM" || m.authorizer != authorizer):
			t.Errorf("%s: authorization %s %q, want CUSTOM with the Lambda authorizer", key, m.authType, m.authorizer)
		case r.Public && m.apiKey:
			t.Errorf("%s is public (sign-in, documents, keys) but requires an API key: nobody could call it", key)
		case !r.Public && !m.apiKey:
			t.Errorf("%s: ApiKeyRequired is not set: the call is metered and throttled on no usage plan", key)
		}
	}
	for key := range methods {
		if _, ok := want[key]; !ok {
			t.Errorf("method %s serves no route of app.AllRoutes()", key)
		}
	}
	if len(methods) != len(want) {
		t.Errorf("%d methods for %d routes", len(methods), len(want))
	}
}

func TestAuthorizer(t *testing.T) {
	try(t, "REQUEST authorizer on the Authorization header, cached 60 s", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::ApiGateway::Authorizer"), map[string]any{
			"Type":                         "REQUEST",
			"IdentitySource":               "method.request.header.Authorization",
			"AuthorizerResultTtlInSeconds": 60,
		})
	})
	for _, a := range resources("AWS::ApiGateway::Authorizer") {
		if !mentions(props(a)["AuthorizerUri"], logicalID(t, testStack.Functions[AuthorizerFunction].FunctionName())) {
			t.Errorf("the authorizer does not invoke the authorizer function")
		}
	}
}

func TestStageAndUsagePlans(t *testing.T) {
	try(t, "API key source AUTHORIZER, regional", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::ApiGateway::RestApi"), map[string]any{
			"ApiKeySourceType":      "AUTHORIZER",
			"EndpointConfiguration": map[string]any{"Types": []any{"REGIONAL"}},
		})
	})
	try(t, "stage throttling", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::ApiGateway::Stage"), map[string]any{
			"StageName": StageName,
			"MethodSettings": assertions.Match_ArrayWith(&[]any{assertions.Match_ObjectLike(&map[string]any{
				"HttpMethod": "*", "ResourcePath": "/*",
				"ThrottlingRateLimit": 500, "ThrottlingBurstLimit": 1000,
			})}),
		})
	})
	plans := resources("AWS::ApiGateway::UsagePlan")
	var tiers []string
	for _, p := range plans {
		pp := props(p)
		name := pp["UsagePlanName"].(string)
		tiers = append(tiers, name[strings.LastIndex(name, "-")+1:])
		if pp["Throttle"] == nil || pp["Quota"] == nil || len(list(pp["ApiStages"])) != 1 {
			t.Errorf("usage plan %s: throttle %v, quota %v, stages %v", name, pp["Throttle"], pp["Quota"], pp["ApiStages"])
		}
	}
	sort.Strings(tiers)
	if !slices.Equal(tiers, []string{"enterprise", "premium", "standard"}) {
		t.Errorf("usage plans for tiers %v, want enterprise, premium, standard", tiers)
	}
	var names []string
	for _, t := range Tiers {
		names = append(names, t.Name)
	}
	if !slices.Equal(names, usagekeys.Plans) {
		t.Errorf("Tiers %v, but the authorizer and the provisioner know the plans %v", names, usagekeys.Plans)
	}
}

func TestAPIKeysCanBeMadeOptional(t *testing.T) {
	dist := t.TempDir()
	if err := fakeDist(dist); err != nil {
		t.Fatal(err)
	}
	a := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	st, err := NewCmsStack(a, "Optional", &CmsStackProps{DistDir: dist, APIKeysOptional: true})
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range *assertions.Template_FromStack(st.Stack, nil).FindResources(jsii.String("AWS::ApiGateway::Method"), nil) {
		if p, _ := (*m)["Properties"].(map[string]any); p["ApiKeyRequired"] == true {
			t.Errorf("%s requires an API key with APIKeysOptional", id)
		}
	}
}

func TestGatewayResponsesUseTheEnvelope(t *testing.T) {
	got := map[string]map[string]any{}
	for _, g := range resources("AWS::ApiGateway::GatewayResponse") {
		p := props(g)
		got[p["ResponseType"].(string)] = p
	}
	for _, typ := range []string{"UNAUTHORIZED", "ACCESS_DENIED", "DEFAULT_4XX", "DEFAULT_5XX"} {
		if got[typ] == nil {
			t.Errorf("no %s gateway response", typ)
		}
	}
	for typ, p := range got {
		status := p["StatusCode"].(string)
		tmpl := p["ResponseTemplates"].(map[string]any)["application/json"].(string)
		var env struct {
			Code   int                 `json:"code"`
			Data   any                 `json:"data"`
			Errors []httpapi.ErrorBody `json:"errors"`
		}
		dec := json.NewDecoder(strings.NewReader(tmpl))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			t.Errorf("%s: template is not the envelope: %v: %s", typ, err, tmpl)
			continue
		}
		if fmt.Sprint(env.Code) != status || env.Data != nil || len(env.Errors) != 1 || env.Errors[0].Code == "" {
			t.Errorf("%s: status %s, body %s", typ, status, tmpl)
		}
		if strings.Contains(tmpl, "$context") {
			t.Errorf("%s: the body shows API Gateway's own text: %s", typ, tmpl)
		}
	}
	want := `{"code":401,"data":null,"errors":[{"code":"unauthorized","message":"Unauthorized"}]}`
	if u := got["UNAUTHORIZED"]; u == nil || u["ResponseTemplates"].(map[string]any)["application/json"] != want {
		t.Errorf("UNAUTHORIZED answers %v, want %s", u, want)
	}
}

// allowStatements returns the Allow statements of the identity policies attached to a role.
func allowStatements(roleID string) []map[string]any {
	var out []map[string]any
	for _, pol := range resources("AWS::IAM::Policy") {
		p := props(pol)
		if !mentions(p["Roles"], roleID) {
			continue
		}
		for _, st := range list(p["PolicyDocument"].(map[string]any)["Statement"]) {
			if s := st.(map[string]any); s["Effect"] == "Allow" {
				out = append(out, s)
			}
		}
	}
	return out
}

func TestNoWildcards(t *testing.T) {
	stmts := func(doc any) []any { return list(doc.(map[string]any)["Statement"]) }
	var all []any
	for _, pol := range resources("AWS::IAM::Policy") {
		all = append(all, stmts(props(pol)["PolicyDocument"])...)
	}
	for id, role := range resources("AWS::IAM::Role") {
		for _, pol := range list(props(role)["Policies"]) {
			all = append(all, stmts(pol.(map[string]any)["PolicyDocument"])...)
		}
		if props(role)["ManagedPolicyArns"] != nil {
			t.Errorf("role %s has managed policies %v", id, props(role)["ManagedPolicyArns"])
		}
	}
	for _, st := range all {
		s := st.(map[string]any)
		for _, a := range strs(s["Action"]) {
			if a == "*" || strings.HasSuffix(a, ":*") {
				t.Errorf("statement with action %q: %v", a, s)
			}
		}
		for _, r := range strs(s["Resource"]) {
			// ListStreams cannot be scoped; Lambda's DynamoDB event source needs it (the
			// publisher). It lists stream ARNs, nothing more.
			if r == "*" && !slices.Equal(strs(s["Action"]), []string{"dynamodb:ListStreams"}) {
				t.Errorf("statement on every resource: %v", s)
			}
		}
	}
}

// otherAccess is what a function may do besides its table actions and writing its logs.
var otherAccess = map[string][]string{
	// the table's stream (event source), the bus, the on-failure queue
	"publisher": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
		"events:PutEvents", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
	// the usage queue (event source), invalid records to the usage DLQ
	"usagequeue": {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage"},
	// the stream (event source), invalid records and the on-failure destination: the usage DLQ
	"usagestream": {"kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:SubscribeToShard",
		"kinesis:DescribeStream", "kinesis:ListStreams", "kinesis:DescribeStreamConsumer", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
	// read usage/*, write reports/usage/* (TestUsageFiles checks the resources)
	"usagefiles": {"s3:GetObject", "s3:PutObject"},
	// POST /billing/runs queues the run's fan-out
	"billing": {"sqs:SendMessage"},
	// the table's stream (event source), its on-failure queue, API keys and usage-plan keys
	// (TestUsageKeysFunction checks the resources)
	"usagekeys": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
		"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	// the billing queue (event source, and more work on it), exports/* (TestBillingWorkerAndSchedule)
	"billingworker": {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage", "s3:PutObject", "s3:AbortMultipartUpload"},
}

// tableWrite is what the synthesized template lets a function write on the table: the write
// actions, the partition key patterns (dynamodb:LeadingKeys) they are narrowed to, and the
// patterns of ConditionCheckItem.
type tableWrite struct {
	actions, keys, checks []string
}

// Hard-coded, from the tablestore code each function runs (docs/deploy.md, "Table access per
// function"); not read from Functions: a grant widened in stack.go fails here.
var (
	wPUD   = []string{"dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
	wPU    = []string{"dynamodb:PutItem", "dynamodb:UpdateItem"}
	wanted = map[string]tableWrite{
		"authorizer":    {},
		"docs":          {actions: []string{"dynamodb:PutItem"}, keys: []string{"SECRET#*"}},
		"invoices":      {actions: []string{"dynamodb:PutItem"}, keys: []string{"SECRET#*"}},
		"commissions":   {actions: []string{"dynamodb:PutItem"}, keys: []string{"SECRET#*"}},
		"bootstrap":     {actions: wPU, keys: []string{"EMAIL#*", "ENT#*", "SECRET#*", "USER#*"}},
		"auth":          {actions: wPUD, keys: []string{"IDEM#*", "IDENT#*", "INVITE#*", "LOGINFAIL#*", "RFAMILY#*", "RTOKEN#*", "SECRET#*", "USER#*"}},
		"distributors":  {actions: wPUD, keys: []string{"BILLINGID#*", "ENT#*", "IDEM#*", "SECRET#*"}},
		"partners":      {actions: wPUD, keys: []string{"BILLINGID#*", "ENT#*", "IDEM#*", "SECRET#*"}},
		"tenants":       {actions: wPUD, keys: []string{"BILLINGID#*", "ENT#*", "EVENT#*", "IDEM#*", "SECRET#*", "SUB#*"}},
		"users":         {actions: wPUD, keys: []string{"EMAIL#*", "ENT#*", "EVENT#*", "IDEM#*", "INVITE#*", "SECRET#*", "USER#*"}},
		"roles":         {actions: wPU, keys: []string{"ENT#*", "SECRET#*", "USER#*"}},
		"pricing":       {actions: wPUD, keys: []string{"IDEM#*", "SECRET#*", "SKU#*", "SKUCODE#*"}},
		"plans":         {actions: wPUD, keys: []string{"IDEM#*", "PLAN#*", "PLANCODE#*", "SECRET#*", "SKU#*"}},
		"pricelists":    {actions: []string{"dynamodb:PutItem"}, keys: []string{"OVR#*", "SECRET#*"}},
		"subscriptions": {actions: wPUD, keys: []string{"ENT#*", "EVENT#*", "IDEM#*", "SECRET#*", "SUB#*"}, checks: []string{"PLAN#*"}},
		"usage":         {actions: wPUD, keys: []string{"EVENT#*", "IDEM#*", "SECRET#*", "UAGG#*", "ULATE#*", "UREC#*", "UREG#*"}},
		"usagequeue":    {actions: wPU, keys: []string{"EVENT#*", "UAGG#*", "ULATE#*", "UREC#*", "UREG#*"}},
		"usagestream":   {actions: wPU, keys: []string{"EVENT#*", "UAGG#*", "ULATE#*", "UREC#*", "UREG#*"}},
		"usagefiles":    {actions: wPU, keys: []string{"EVENT#*", "UAGG#*", "ULATE#*", "UREC#*", "UREG#*"}},
		"billing":       {actions: []string{"dynamodb:DeleteItem", "dynamodb:PutItem"}, keys: []string{"IDEM#*", "RUN#*", "RUNP#*", "SECRET#*"}},
		"billingworker": {actions: []string{"dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
			keys:   []string{"BILLED#*", "CLOSE#*", "COMM#*", "ENT#*", "EVENT#*", "INV#*", "INVSEQ#*", "RUN#*", "RUNP#*", "RUNT#*", "TINV#*", "UAGG#*", "ULATE#*"},
			checks: []string{"ENT#*"}},
		"usagekeys": {actions: []string{"dynamodb:PutItem"}, keys: []string{"SECRET#usage-key"}},
		"publisher": {},
	}
	// readers may GetItem and BatchGetItem; queriers also Query the table and GSI1.
	readers  = []string{"auth", "authorizer", "billing", "billingworker", "bootstrap", "commissions", "distributors", "docs", "invoices", "partners", "plans", "pricelists", "pricing", "roles", "subscriptions", "tenants", "usage", "usagefiles", "usagekeys", "usagequeue", "usagestream", "users"}
	queriers = []string{"billing", "billingworker", "commissions", "distributors", "invoices", "partners", "plans", "pricelists", "pricing", "roles", "subscriptions", "tenants", "usage", "usagefiles", "usagekeys", "usagequeue", "usagestream", "users"}
)

// isItemAction reports an action on the table's items (not its stream).
func isItemAction(a string) bool {
	return slices.Contains(itemWrites, a) || slices.Contains([]string{"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem", "dynamodb:Scan"}, a)
}

var itemWrites = []string{"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
	"dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete"}

// leadingKeys returns a statement's dynamodb:LeadingKeys patterns and whether the condition is
// the ForAllValues:StringLike form (every key of the request must match one).
func leadingKeys(s map[string]any) ([]string, bool) {
	cond, _ := s["Condition"].(map[string]any)
	if len(cond) != 1 {
		return nil, false
	}
	like, ok := cond["ForAllValues:StringLike"].(map[string]any)
	if !ok || len(like) != 1 {
		return nil, false
	}
	ks := strs(like["dynamodb:LeadingKeys"])
	return ks, len(ks) > 0
}

// likeMatch is IAM's StringLike: * matches any run of characters (none included), ? one.
func likeMatch(pattern, s string) bool {
	var re strings.Builder
	re.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(s)
}

// mayWrite evaluates the function's Allow statements for one write action on an item with
// partition key pk of the table: IAM's answer for that request.
func mayWrite(t *testing.T, fn, action, pk string) bool {
	t.Helper()
	table := logicalID(t, testStack.Table.TableName())
	for _, s := range allowStatements(roleID(t, fn)) {
		acts := strs(s["Action"])
		if !slices.ContainsFunc(acts, func(a string) bool { return a == action || a == "*" || a == "dynamodb:*" }) || !mentions(s["Resource"], table) {
			continue
		}
		if s["Condition"] == nil {
			return true
		}
		if ks, ok := leadingKeys(s); ok && slices.ContainsFunc(ks, func(k string) bool { return likeMatch(k, pk) }) {
			return true
		}
	}
	return false
}

func TestTableWritesAreNarrowedByKey(t *testing.T) {
	table := logicalID(t, testStack.Table.TableName())
	if len(wanted) != len(testStack.Functions) {
		t.Errorf("wanted lists %d functions, the stack has %d: add the new function's table writes here", len(wanted), len(testStack.Functions))
	}
	for name := range testStack.Functions {
		var got tableWrite
		var read, query bool
		for _, s := range allowStatements(roleID(t, name)) {
			acts := strs(s["Action"])
			for _, a := range acts {
				if a == "*" || a == "dynamodb:*" || strings.HasSuffix(a, "*") {
					t.Errorf("%s: wildcard action %q", name, a)
				}
			}
			if !mentions(s["Resource"], table) || !slices.ContainsFunc(acts, isItemAction) {
				for _, a := range acts {
					if !slices.Contains(otherAccess[name], a) && !slices.Contains([]string{"logs:CreateLogStream", "logs:PutLogEvents"}, a) {
						t.Errorf("%s may %s: not something it uses", name, a)
					}
				}
				continue
			}
			switch {
			case slices.Equal(acts, []string{"dynamodb:GetItem", "dynamodb:BatchGetItem"}) && s["Condition"] == nil:
				read = true
			case slices.Equal(acts, []string{"dynamodb:Query"}) && s["Condition"] == nil:
				query = len(list(s["Resource"])) == 2 && strings.Contains(fmt.Sprint(s["Resource"]), "/index/GSI1")
			case slices.Equal(acts, []string{"dynamodb:ConditionCheckItem"}):
				ks, ok := leadingKeys(s)
				if !ok {
					t.Errorf("%s: ConditionCheckItem not narrowed by dynamodb:LeadingKeys: %v", name, s)
				}
				got.checks = append(got.checks, ks...)
			default:
				ks, ok := leadingKeys(s)
				if !ok {
					t.Errorf("%s: table statement %v is not a read and not narrowed by dynamodb:LeadingKeys", name, acts)
				}
				for _, a := range acts {
					if !slices.Contains(itemWrites, a) {
						t.Errorf("%s: %s in a write statement", name, a)
					}
				}
				got.actions = append(got.actions, acts...)
				got.keys = append(got.keys, ks...)
			}
		}
		slices.Sort(got.actions)
		slices.Sort(got.keys)
		slices.Sort(got.checks)
		w := wanted[name]
		if !slices.Equal(got.actions, w.actions) || !slices.Equal(got.keys, w.keys) || !slices.Equal(got.checks, w.checks) {
			t.Errorf("%s writes %v on %v, checks %v;\n want %v on %v, checks %v", name, got.actions, got.keys, got.checks, w.actions, w.keys, w.checks)
		}
		if read != slices.Contains(readers, name) || query != slices.Contains(queriers, name) {
			t.Errorf("%s: read %v, query %v; want %v, %v", name, read, query, slices.Contains(readers, name), slices.Contains(queriers, name))
		}
	}
}

// What must never be allowed, asked the way IAM would be asked: one action on one item.
func TestTableWritesThatMustBeDenied(t *testing.T) {
	for _, tc := range []struct {
		fn, action, pk string
	}{
		{"usage", "dynamodb:PutItem", "INV#inv_1"},
		{"usage", "dynamodb:UpdateItem", "RUN#run_1"},
		{"usage", "dynamodb:PutItem", "COMM#prt_1"},
		{"usage", "dynamodb:PutItem", "ENT#prt_1"},
		{"usage", "dynamodb:PutItem", "USER#usr_1"},
		{"usage", "dynamodb:BatchWriteItem", "UREC#ten_1#r1"},
		{"usagequeue", "dynamodb:PutItem", "IDEM#k"},
		{"usagequeue", "dynamodb:PutItem", "SECRET#signing-keys"},
		{"usagequeue", "dynamodb:DeleteItem", "UREC#ten_1#r1"},
		{"invoices", "dynamodb:PutItem", "INV#inv_1"},
		{"invoices", "dynamodb:PutItem", "ENT#ten_1"},
		{"invoices", "dynamodb:UpdateItem", "SECRET#signing-keys"},
		{"invoices", "dynamodb:DeleteItem", "SECRET#signing-keys"},
		{"commissions", "dynamodb:PutItem", "COMM#prt_1"},
		{"docs", "dynamodb:PutItem", "USER#usr_1"},
		{"authorizer", "dynamodb:PutItem", "SECRET#signing-keys"},
		{"authorizer", "dynamodb:UpdateItem", "USER#usr_1"},
		{"authorizer", "dynamodb:DeleteItem", "RTOKEN#x"},
		{"authorizer", "dynamodb:ConditionCheckItem", "ENT#platform"},
		{"billing", "dynamodb:PutItem", "INV#inv_1"},
		{"billing", "dynamodb:UpdateItem", "ENT#ten_1"},
		{"billingworker", "dynamodb:PutItem", "USER#usr_1"},
		{"billingworker", "dynamodb:PutItem", "SECRET#signing-keys"},
		{"billingworker", "dynamodb:PutItem", "UREC#ten_1#r1"},
		{"pricelists", "dynamodb:PutItem", "SKU#sku_1"},
		{"pricelists", "dynamodb:DeleteItem", "OVR#ten_1"},
		{"roles", "dynamodb:DeleteItem", "USER#usr_1"},
		{"roles", "dynamodb:PutItem", "RTOKEN#x"},
		{"partners", "dynamodb:PutItem", "USER#usr_1"},
		{"subscriptions", "dynamodb:PutItem", "PLAN#pln_1"},
		{"subscriptions", "dynamodb:PutItem", "INV#inv_1"},
		{"auth", "dynamodb:PutItem", "ENT#platform"},
		{"usagekeys", "dynamodb:PutItem", "SECRET#signing-keys"},
		{"usagekeys", "dynamodb:PutItem", "ENT#prt_1"},
		{"publisher", "dynamodb:PutItem", "EVENT#evt_1"},
	} {
		if mayWrite(t, tc.fn, tc.action, tc.pk) {
			t.Errorf("%s may %s an item %s", tc.fn, tc.action, tc.pk)
		}
	}
	// And what the code needs is allowed (a narrowing too tight breaks production).
	for _, tc := range []struct {
		fn, action, pk string
	}{
		{"usage", "dynamodb:PutItem", "UREC#ten_1#r1"},
		{"usage", "dynamodb:DeleteItem", "IDEM#usr_1#k"},
		{"invoices", "dynamodb:PutItem", "SECRET#pagination-key"},
		{"billingworker", "dynamodb:BatchWriteItem", "COMM#prt_1"},
		{"billingworker", "dynamodb:ConditionCheckItem", "ENT#ten_1"},
		{"subscriptions", "dynamodb:ConditionCheckItem", "PLAN#pln_1"},
		{"usagekeys", "dynamodb:PutItem", "SECRET#usage-key"},
		{"auth", "dynamodb:UpdateItem", "RFAMILY#f"},
	} {
		if !mayWrite(t, tc.fn, tc.action, tc.pk) {
			t.Errorf("%s may not %s an item %s: its code does", tc.fn, tc.action, tc.pk)
		}
	}
}

func TestNothingHasWildcardTableActions(t *testing.T) {
	for name := range testStack.Functions {
		for _, s := range allowStatements(roleID(t, name)) {
			for _, a := range strs(s["Action"]) {
				if strings.HasPrefix(a, "dynamodb:") && (strings.Contains(a, "*") || slices.Contains([]string{"dynamodb:Scan", "dynamodb:DescribeTable", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:PartiQLSelect"}, a)) {
					t.Errorf("%s may %s", name, a)
				}
			}
		}
	}
}

func TestAlarms(t *testing.T) {
	alarms := resources("AWS::CloudWatch::Alarm")
	topic := logicalID(t, testStack.AlarmTopic.TopicArn())
	for _, a := range alarms {
		if p := props(a); !mentions(p["AlarmActions"], topic) {
			t.Errorf("alarm %v notifies nobody", p["AlarmDescription"])
		}
	}
	for name, q := range map[string]awssqs.Queue{"usage": testStack.UsageDLQ, "publisher": testStack.PublisherDLQ, "billing": testStack.BillingDLQ} {
		if q == nil {
			t.Errorf("no %s dead-letter queue", name)
			continue
		}
		id := testStack.Resolve(q.QueueName()).(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
		var found bool
		for _, a := range alarms {
			p := props(a)
			if p["MetricName"] == "ApproximateNumberOfMessagesVisible" && mentions(p["Dimensions"], id) {
				found = true
			}
		}
		if !found {
			t.Errorf("no alarm on the depth of the %s dead-letter queue", name)
		}
	}
	for name, fn := range testStack.Functions {
		id := logicalID(t, fn.FunctionName())
		var found bool
		for _, a := range alarms {
			p := props(a)
			if p["MetricName"] == "Errors" && p["Namespace"] == "AWS/Lambda" && mentions(p["Dimensions"], id) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error alarm on function %s", name)
		}
	}
}

func TestUsageIngestionAndBuckets(t *testing.T) {
	dlq := testStack.Resolve(testStack.UsageDLQ.QueueArn())
	try(t, "usage queue redrives to its DLQ", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{
			"RedrivePolicy":        map[string]any{"deadLetterTargetArn": dlq, "maxReceiveCount": 5},
			"SqsManagedSseEnabled": true,
		})
	})
	try(t, "one provisioned shard", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::Kinesis::Stream"), map[string]any{
			"ShardCount": 1, "StreamModeDetails": map[string]any{"StreamMode": "PROVISIONED"},
			"StreamEncryption": assertions.Match_ObjectLike(&map[string]any{"EncryptionType": "KMS"}),
		})
	})
	buckets := resources("AWS::S3::Bucket")
	if len(buckets) != 2 {
		t.Errorf("%d buckets, want usage and exports", len(buckets))
	}
	for id, b := range buckets {
		p := props(b)
		pab, _ := p["PublicAccessBlockConfiguration"].(map[string]any)
		for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
			if pab[k] != true {
				t.Errorf("bucket %s: %s is not set", id, k)
			}
		}
		if p["BucketEncryption"] == nil {
			t.Errorf("bucket %s is not encrypted", id)
		}
		if b["DeletionPolicy"] != "Retain" {
			t.Errorf("bucket %s is deleted with the stack", id)
		}
		var ssl bool
		for _, pol := range resources("AWS::S3::BucketPolicy") {
			pp := props(pol)
			if mentions(pp["Bucket"], id) && strings.Contains(fmt.Sprint(pp["PolicyDocument"]), "aws:SecureTransport") {
				ssl = true
			}
		}
		if !ssl {
			t.Errorf("bucket %s accepts plain HTTP", id)
		}
	}
	try(t, "event bus", func() { testTmpl.ResourceCountIs(jsii.String("AWS::Events::EventBus"), jsii.Number(1)) })
}

func TestPublisherReadsTheStreamAndPutsOnTheBus(t *testing.T) {
	fn := logicalID(t, testStack.Functions["publisher"].FunctionName())
	try(t, "stream event source", func() {
		testTmpl.HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), map[string]any{
			"FunctionName":               map[string]any{"Ref": fn},
			"EventSourceArn":             map[string]any{"Fn::GetAtt": []any{logicalID(t, testStack.Table.TableName()), "StreamArn"}},
			"StartingPosition":           "TRIM_HORIZON",
			"FunctionResponseTypes":      []any{"ReportBatchItemFailures"},
			"BisectBatchOnFunctionError": true,
			"MaximumRetryAttempts":       10,
			"DestinationConfig":          assertions.Match_ObjectLike(&map[string]any{"OnFailure": assertions.Match_AnyValue()}),
			"FilterCriteria": map[string]any{"Filters": []any{map[string]any{
				"Pattern": assertions.Match_SerializedJson(map[string]any{
					"eventName": []any{"INSERT"},
					"dynamodb":  map[string]any{"NewImage": map[string]any{"Kind": map[string]any{"S": []any{"event"}}}},
				}),
			}}},
		})
	})
	bus := logicalID(t, testStack.Bus.EventBusName())
	var put bool
	for _, s := range allowStatements(logicalID(t, testStack.Functions["publisher"].Role().RoleName())) {
		if slices.Contains(strs(s["Action"]), "events:PutEvents") && mentions(s["Resource"], bus) {
			put = true
		}
	}
	if !put {
		t.Errorf("the publisher may not put events on the bus")
	}
	for name := range testStack.Functions {
		if name == "publisher" {
			continue
		}
		for _, s := range allowStatements(logicalID(t, testStack.Functions[name].Role().RoleName())) {
			if slices.Contains(strs(s["Action"]), "events:PutEvents") {
				t.Errorf("%s may put events on the bus: only the publisher does", name)
			}
		}
	}
}

// changedConfig returns a valid configuration in which every field differs from its default, so
// that a field ConfigEnv forgets cannot pass the round trip by keeping its default.
func changedConfig(t *testing.T) app.Config {
	t.Helper()
	c := app.Defaults()
	known := map[string]any{
		"PlatformCurrency": "USD", "LogLevel": "debug", "TokenIssuer": "https://api.example.com", "TokenAudience": "https://api.example.com/api",
		"Providers": []auth.Provider{
			{Name: "entra", JWKSURL: "https://login.example/keys", Issuer: "https://login.example/", Audience: "api://cms"},
			{Name: "google", JWKSURL: "https://google.example/certs", Issuer: "https://accounts.google.com", Audience: "cms.apps"},
		},
	}
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		if k, ok := known[name]; ok {
			f.Set(reflect.ValueOf(k))
			continue
		}
		switch f.Interface().(type) {
		case string:
			f.SetString("changed-" + strings.ToLower(name))
		case time.Duration:
			f.SetInt(f.Int() + int64(time.Minute))
		case int:
			f.SetInt(f.Int() + 1)
		case bool:
			f.SetBool(!f.Bool())
		default:
			t.Fatalf("app.Config.%s (%s): teach changedConfig how to change it", name, f.Type())
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("changedConfig is not valid (teach it a valid value): %v", err)
	}
	return c
}

func TestConfigEnvRoundTrips(t *testing.T) {
	defaults := app.Defaults()
	defaults.Table = "t"
	for name, cfg := range map[string]app.Config{"defaults": defaults, "every field changed": changedConfig(t)} {
		t.Run(name, func(t *testing.T) {
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CMS_") {
					t.Setenv(k, "")
				}
			}
			for k, v := range ConfigEnv(cfg) {
				t.Setenv(k, v)
			}
			got, err := app.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(cfg)
			if string(a) != string(b) {
				t.Errorf("FromEnv(ConfigEnv(cfg)) =\n%s\nwant\n%s\n(a field ConfigEnv does not render?)", a, b)
			}
		})
	}
}

func TestNewCmsStackReportsBadInputs(t *testing.T) {
	a := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	routes := append(app.AllRoutes(), httpapi.Route{Method: "GET", Path: "/api/v1/nothing", Function: "nothing"})
	bad := app.Defaults()
	bad.PlatformCurrency = "euro"
	_, err := NewCmsStack(a, "Bad", &CmsStackProps{DistDir: t.TempDir(), Routes: routes, Config: &bad,
		StackProps: awscdk.StackProps{StackName: jsii.String("A_Stack_Name_Too_Long_To_Name_A_Bucket")}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`function "nothing" is not in infra's Functions`, "auth/bootstrap is missing: run make build", "CMS_PLATFORM_CURRENCY", "the usage bucket is named after it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestInvokePermissions(t *testing.T) {
	api := logicalID(t, testStack.API.RestApiId())
	perms := resources("AWS::Lambda::Permission")
	for name, fn := range testStack.Functions {
		id := logicalID(t, fn.FunctionName())
		var n int
		for _, p := range perms {
			pp := props(p)
			if !mentions(pp["FunctionName"], id) {
				continue
			}
			if name == "usagefiles" && pp["Principal"] == "s3.amazonaws.com" {
				continue // the usage bucket's notification (TestUsageFiles)
			}
			n++
			if pp["Principal"] != "apigateway.amazonaws.com" || !mentions(pp["SourceArn"], api) {
				t.Errorf("%s may be invoked by %v from %v", name, pp["Principal"], pp["SourceArn"])
			}
		}
		serves := slices.ContainsFunc(app.AllRoutes(), func(r httpapi.Route) bool { return r.Function == name })
		if want := map[bool]int{true: 1, false: 0}[serves || name == AuthorizerFunction]; n != want {
			t.Errorf("%s has %d invoke permissions, want %d", name, n, want)
		}
	}
	if n := len(testJSON["Resources"].(map[string]any)); n > 400 {
		t.Errorf("%d resources: CloudFormation allows 500 per stack; split the stack before it is reached", n)
	}
}
