package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"gopkg.in/yaml.v3"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/keyprovisioner"
	"github.com/channelbilling/cms/shared/tablestore"
)

// repoRoot is the repository root: infra's tests run in infra/.
const repoRoot = ".."

// functionDirs lists functions/<name> (directories with a main.go).
func functionDirs(t *testing.T) []string {
	t.Helper()
	mains, err := filepath.Glob(filepath.Join(repoRoot, "functions", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mains {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	if len(out) == 0 {
		t.Fatal("no functions/<name>/main.go found")
	}
	sort.Strings(out)
	return out
}

// samTemplate parses template.yaml, turning the short forms (!Ref, !GetAtt, !Sub...) into the
// long forms ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...).
func samTemplate(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	v, err := fromYAML(doc.Content[0])
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	return v.(map[string]any)
}

func fromYAML(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			val, err := fromYAML(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			val, err := fromYAML(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	case yaml.AliasNode:
		return fromYAML(n.Alias)
	default:
		if isIntrinsic(n.Tag) {
			v = n.Value
		} else if err := n.Decode(&v); err != nil {
			return nil, err
		}
	}
	switch tag := n.Tag; {
	case tag == "!Ref":
		return map[string]any{"Ref": v}, nil
	case tag == "!GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	case isIntrinsic(tag):
		return map[string]any{"Fn::" + tag[1:]: v}, nil
	}
	return v, nil
}

// isIntrinsic reports a CloudFormation short form (!Sub), as opposed to a YAML tag (!!str).
func isIntrinsic(tag string) bool {
	return strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!")
}

func samResources(t *testing.T, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range samTemplate(t)["Resources"].(map[string]any) {
		if res := r.(map[string]any); res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

// samLogicalID is a function's logical id in template.yaml; the Makefile's build-%Function rule
// lower-cases it back to the directory name.
func samLogicalID(name string) string { return construct(name) + "Function" }

func TestEveryFunctionIsInTheStackTheSAMTemplateAndEvents(t *testing.T) {
	dirs := functionDirs(t)
	samFns := samResources(t, "AWS::Serverless::Function")
	for _, name := range dirs {
		if _, ok := Functions[name]; !ok {
			t.Errorf("functions/%s is not in Functions (infra/stack.go): give it a size and its table access", name)
		}
		if _, ok := testStack.Functions[name]; !ok {
			t.Errorf("functions/%s is not in the CDK stack", name)
		}
		id := samLogicalID(name)
		if strings.ToLower(strings.TrimSuffix(id, "Function")) != name {
			t.Errorf("functions/%s: sam build's make target build-%s would not find it; use a lower-case single-word name", name, id)
		}
		if fn, ok := samFns[id]; !ok {
			t.Errorf("functions/%s is not in template.yaml (want resource %s)", name, id)
		} else if md, _ := fn["Metadata"].(map[string]any); md["BuildMethod"] != "makefile" {
			t.Errorf("template.yaml %s: Metadata.BuildMethod %v, want makefile", id, md["BuildMethod"])
		}
		samples, _ := filepath.Glob(filepath.Join(repoRoot, "events", name, "*.json"))
		if len(samples) == 0 {
			t.Errorf("functions/%s has no sample event in events/%s/", name, name)
		}
	}
	for name := range Functions {
		if !slices.Contains(dirs, name) {
			t.Errorf("Functions has %s, but there is no functions/%s/main.go", name, name)
		}
	}
	for id := range samFns {
		if !slices.Contains(dirs, strings.ToLower(strings.TrimSuffix(id, "Function"))) {
			t.Errorf("template.yaml has %s, but there is no such function directory", id)
		}
	}
}

// samRoute is an Api event of template.yaml.
type samRoute struct {
	fn     string
	public bool
}

func TestSAMRoutesAreTheCodesRoutes(t *testing.T) {
	got := map[string]samRoute{}
	for id, fn := range samResources(t, "AWS::Serverless::Function") {
		name := strings.ToLower(strings.TrimSuffix(id, "Function"))
		evs, _ := props(fn)["Events"].(map[string]any)
		for evName, ev := range evs {
			e := ev.(map[string]any)
			if e["Type"] != "Api" {
				continue
			}
			p := e["Properties"].(map[string]any)
			if !mentions(p["RestApiId"], "Api") {
				t.Errorf("%s.%s is not on the Api resource", id, evName)
			}
			key := strings.ToUpper(p["Method"].(string)) + " " + p["Path"].(string)
			auth, _ := p["Auth"].(map[string]any)
			if _, dup := got[key]; dup {
				t.Errorf("template.yaml routes %s twice", key)
			}
			public := auth["Authorizer"] == "NONE"
			// Api.Auth.ApiKeyRequired is true; a public route must turn it off, an authorised
			// one must not.
			if keyOff := auth["ApiKeyRequired"] == false; keyOff != public {
				t.Errorf("template.yaml %s: public %v but ApiKeyRequired %v", key, public, auth["ApiKeyRequired"])
			}
			got[key] = samRoute{fn: name, public: public}
		}
	}
	want := map[string]samRoute{}
	for _, r := range app.AllRoutes() {
		want[r.Method+" "+r.Path] = samRoute{fn: r.Function, public: r.Public}
	}
	for key, w := range want {
		if g, ok := got[key]; !ok {
			t.Errorf("template.yaml lacks %s (function %s)", key, w.fn)
		} else if g != w {
			t.Errorf("template.yaml %s: %+v, the code says %+v", key, g, w)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("template.yaml routes %s, which the code does not serve", key)
		}
	}
}

func TestSAMTemplateMatchesTheStack(t *testing.T) {
	sam := samTemplate(t)
	res := sam["Resources"].(map[string]any)

	cdkTable := props(resources("AWS::DynamoDB::Table")[logicalID(t, testStack.Table.TableName())])
	samTable := props(res["Table"].(map[string]any))
	for _, k := range []string{"KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode",
		"TimeToLiveSpecification", "StreamSpecification", "PointInTimeRecoverySpecification", "DeletionProtectionEnabled"} {
		a, _ := json.Marshal(cdkTable[k])
		b, _ := json.Marshal(samTable[k])
		if string(a) != string(b) {
			t.Errorf("table %s: CDK %s, template.yaml %s", k, a, b)
		}
	}

	api := props(res["Api"].(map[string]any))
	responses := api["GatewayResponses"].(map[string]any)
	for _, g := range gatewayResponses {
		r, ok := responses[g.Type].(map[string]any)
		if !ok {
			t.Errorf("template.yaml has no %s gateway response", g.Type)
			continue
		}
		body := fmt.Sprintf(`{"code":%d,"data":null,"errors":[{"code":%q,"message":%q}]}`, g.Status, g.Code, g.Message)
		if fmt.Sprint(r["StatusCode"]) != fmt.Sprint(g.Status) || r["ResponseTemplates"].(map[string]any)["application/json"] != body {
			t.Errorf("template.yaml %s: %v, want status %d and %s", g.Type, r, g.Status, body)
		}
	}
	if len(responses) != len(gatewayResponses) {
		t.Errorf("template.yaml has %d gateway responses, the stack %d", len(responses), len(gatewayResponses))
	}
	if api["Auth"].(map[string]any)["ApiKeyRequired"] != true {
		t.Errorf("template.yaml Api.Auth.ApiKeyRequired is %v, want true", api["Auth"].(map[string]any)["ApiKeyRequired"])
	}
	if api["ApiKeySourceType"] != "AUTHORIZER" || api["StageName"] != StageName {
		t.Errorf("template.yaml Api: key source %v, stage %v", api["ApiKeySourceType"], api["StageName"])
	}
	authz := api["Auth"].(map[string]any)["Authorizers"].(map[string]any)["CmsAuthorizer"].(map[string]any)
	ident := authz["Identity"].(map[string]any)
	if authz["FunctionPayloadType"] != "REQUEST" || !slices.Equal(strs(ident["Headers"]), []string{"Authorization"}) || ident["ReauthorizeEvery"] != 60 ||
		!mentions(authz["FunctionArn"], samLogicalID(AuthorizerFunction)) {
		t.Errorf("template.yaml authorizer: %v", authz)
	}

	for _, tier := range Tiers {
		p := props(res["UsagePlan"+construct(tier.Name)].(map[string]any))
		th, q := p["Throttle"].(map[string]any), p["Quota"].(map[string]any)
		if num(th["RateLimit"]) != tier.RatePerSec || num(th["BurstLimit"]) != tier.Burst || num(q["Limit"]) != tier.QuotaPerMonth || q["Period"] != "MONTH" {
			t.Errorf("template.yaml usage plan %s: %v %v, want %+v", tier.Name, th, q, tier)
		}
	}

	globals := sam["Globals"].(map[string]any)["Function"].(map[string]any)
	for name, spec := range Functions {
		p := props(res[samLogicalID(name)].(map[string]any))
		mem, timeout := globals["MemorySize"], globals["Timeout"]
		if v, ok := p["MemorySize"]; ok {
			mem = v
		}
		if v, ok := p["Timeout"]; ok {
			timeout = v
		}
		if fmt.Sprint(mem, timeout) != fmt.Sprint(spec.MemoryMB, int(spec.Timeout.Seconds())) {
			t.Errorf("template.yaml %s: %v MB, %v s; the stack: %d MB, %v", name, mem, timeout, spec.MemoryMB, spec.Timeout)
		}
		if got, want := tableGrants(samStatements(p)), tableGrants(allowStatements(logicalID(t, testStack.Functions[name].Role().RoleName()))); !slices.Equal(got, want) {
			t.Errorf("template.yaml %s table statements:\n %v\nthe stack:\n %v", name, got, want)
		}
	}

	env := globals["Environment"].(map[string]any)["Variables"].(map[string]any)
	cfg := app.Defaults()
	cfg.Table = "t"
	for k := range ConfigEnv(cfg) {
		if _, ok := env[k]; !ok && !slices.Contains([]string{"CMS_ACCESS_TTL", "CMS_REFRESH_TTL", "CMS_MAX_LOGIN_FAILURES", "CMS_LOGIN_FAILURE_WINDOW"}, k) {
			t.Errorf("template.yaml does not set %s", k)
		}
	}
	// The same alarms, topic and 30-day log groups as the stack.
	alarms := samResources(t, "AWS::CloudWatch::Alarm")
	for id, a := range alarms {
		if !mentions(props(a)["AlarmActions"], "AlarmTopic") {
			t.Errorf("template.yaml alarm %s notifies nobody", id)
		}
	}
	for name := range Functions {
		id := samLogicalID(name)
		lg, _ := props(res[id].(map[string]any))["LoggingConfig"].(map[string]any)
		logs, ok := res[id+"Logs"].(map[string]any)
		if !ok || !mentions(lg["LogGroup"], id+"Logs") || num(props(logs)["RetentionInDays"]) != 30 {
			t.Errorf("template.yaml %s: logging %v, log group %v; want its own group kept 30 days", id, lg, logs)
		}
		a, ok := alarms[id+"Errors"]
		if p := props(a); !ok || p["MetricName"] != "Errors" || p["Namespace"] != "AWS/Lambda" || !mentions(p["Dimensions"], id) {
			t.Errorf("template.yaml: no error alarm on %s", id)
		}
	}
	for _, q := range []string{"UsageDeadLetters", "PublisherDeadLetters", "BillingDeadLetters", "UsageKeysDeadLetters"} {
		if p := props(alarms[q+"Depth"]); p["MetricName"] != "ApproximateNumberOfMessagesVisible" || !mentions(p["Dimensions"], q) {
			t.Errorf("template.yaml: no depth alarm on %s", q)
		}
	}
	for _, typ := range []string{"AWS::SQS::Queue", "AWS::Kinesis::Stream", "AWS::S3::Bucket", "AWS::Events::EventBus", "AWS::CloudWatch::Alarm", "AWS::SNS::Topic", "AWS::Logs::LogGroup"} {
		var n int
		for _, r := range res {
			if r.(map[string]any)["Type"] == typ {
				n++
			}
		}
		if n != len(resources(typ)) {
			t.Errorf("%s: %d in template.yaml, %d in the stack", typ, n, len(resources(typ)))
		}
	}

	// The same outputs (the runbooks name them), apart from the API URL CDK's RestApi adds by
	// itself (ApiEndpoint<hash>, the same URL as ApiUrl).
	var cdkOut, samOut []string
	for name := range testJSON["Outputs"].(map[string]any) {
		if !strings.HasPrefix(name, "ApiEndpoint") {
			cdkOut = append(cdkOut, name)
		}
	}
	for name := range sam["Outputs"].(map[string]any) {
		samOut = append(samOut, name)
	}
	slices.Sort(cdkOut)
	slices.Sort(samOut)
	if !slices.Equal(cdkOut, samOut) {
		t.Errorf("outputs: template.yaml %v, the stack %v", samOut, cdkOut)
	}
}

// samStatements returns the statements of a template.yaml function's inline policies.
func samStatements(fnProps map[string]any) []map[string]any {
	var out []map[string]any
	for _, pol := range list(fnProps["Policies"]) {
		for _, st := range list(pol.(map[string]any)["Statement"]) {
			out = append(out, st.(map[string]any))
		}
	}
	return out
}

// tableGrants renders the statements on the table's items (not its stream) as comparable
// lines: actions, on the table or the table and GSI1, and the dynamodb:LeadingKeys condition.
func tableGrants(stmts []map[string]any) []string {
	var out []string
	for _, s := range stmts {
		acts := strs(s["Action"])
		if !slices.ContainsFunc(acts, isItemAction) {
			continue
		}
		slices.Sort(acts)
		on := "table"
		if strings.Contains(fmt.Sprint(s["Resource"]), "/index/GSI1") {
			on = "table and GSI1"
		}
		ks, _ := leadingKeys(s)
		ks = slices.Clone(ks)
		slices.Sort(ks)
		out = append(out, fmt.Sprintf("%v on %s if %v (%d conditions)", acts, on, ks, len(condOf(s))))
	}
	slices.Sort(out)
	return out
}

func condOf(s map[string]any) map[string]any {
	c, _ := s["Condition"].(map[string]any)
	return c
}

// apigw is the JSON of template.yaml's !Sub of an API Gateway management path's ARN.
func apigw(path string) string {
	return `{"Fn::Sub":"arn:${AWS::Partition}:apigateway:${AWS::Region}::` + path + `"}`
}

// num returns a YAML or JSON number as a float64 (NaN otherwise).
func num(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case float64:
		return n
	}
	return math.NaN()
}

var pathParam = regexp.MustCompile(`^\{([^}+]+)(\+?)\}$`)

// matchPath matches a request path against an API Gateway resource path (/a/{id}, /b/{proxy+})
// and returns the path parameters.
func matchPath(resource, path string) (map[string]string, bool) {
	rs, ps := strings.Split(resource, "/"), strings.Split(path, "/")
	params := map[string]string{}
	for i, seg := range rs {
		if i >= len(ps) {
			return nil, false
		}
		m := pathParam.FindStringSubmatch(seg)
		switch {
		case m != nil && m[2] == "+":
			params[m[1]] = strings.Join(ps[i:], "/")
			return params, params[m[1]] != ""
		case m != nil:
			if ps[i] == "" {
				return nil, false
			}
			params[m[1]] = ps[i]
		case seg != ps[i]:
			return nil, false
		}
	}
	return params, len(rs) == len(ps)
}

// The event types the handlers decode (aws-lambda-go).
type (
	proxyRequest      = events.APIGatewayProxyRequest
	authorizerRequest = events.APIGatewayCustomAuthorizerRequestTypeRequest
)

// routeOf returns the route an HTTP sample event is for.
func routeOf(fn, method, resource string) (httpapi.Route, bool) {
	for _, r := range app.AllRoutes() {
		if r.Function == fn && r.Method == method && r.Path == resource {
			return r, true
		}
	}
	return httpapi.Route{}, false
}

var principalKeys = []string{httpapi.CtxUserID, httpapi.CtxEmail, httpapi.CtxRole, httpapi.CtxScopeID, httpapi.CtxScopeType, httpapi.CtxScopePath, httpapi.CtxSuspended}

func TestSampleEventsHaveTheHandlersShape(t *testing.T) {
	httpFns := map[string]bool{}
	for _, r := range app.AllRoutes() {
		httpFns[r.Function] = true
	}
	for _, name := range functionDirs(t) {
		samples, _ := filepath.Glob(filepath.Join(repoRoot, "events", name, "*.json"))
		for _, path := range samples {
			t.Run(name+"/"+filepath.Base(path), func(t *testing.T) {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				strict := func(v any) {
					t.Helper()
					dec := json.NewDecoder(strings.NewReader(string(b)))
					dec.DisallowUnknownFields()
					if err := dec.Decode(v); err != nil {
						t.Fatalf("not the shape the handler receives: %v", err)
					}
				}
				switch {
				case httpFns[name]:
					var ev proxyRequest
					strict(&ev)
					checkProxyEvent(t, name, ev)
				case name == AuthorizerFunction:
					var ev authorizerRequest
					strict(&ev)
					checkAuthorizerEvent(t, ev)
				case name == "publisher":
					var ev events.DynamoDBEvent
					strict(&ev)
					checkStreamEvent(t, ev)
				case name == "usagequeue" || name == "billingworker":
					var ev events.SQSEvent
					strict(&ev)
					checkSQSEvent(t, name, ev)
				case name == "usagestream":
					var ev events.KinesisEvent
					strict(&ev)
					checkKinesisEvent(t, ev)
				case name == "usagefiles":
					var ev events.S3Event
					strict(&ev)
					checkS3Event(t, ev)
				case name == "usagekeys" && strings.Contains(string(b), `"Records"`):
					var ev events.DynamoDBEvent
					strict(&ev)
					checkEntityStreamEvent(t, ev)
				case name == "usagekeys":
					var ev keyprovisioner.SyncEvent
					strict(&ev)
					if ev.Action != keyprovisioner.SyncAction {
						t.Errorf("usagekeys event: action %q, want %q", ev.Action, keyprovisioner.SyncAction)
					}
				case name == "bootstrap":
					var ev app.BootstrapEvent
					strict(&ev)
					if ev.Email == "" || ev.Password == "" {
						t.Errorf("bootstrap event without email or password: %+v", ev)
					}
				default:
					t.Errorf("no shape check for the events of %s: add one to this test", name)
				}
			})
		}
	}
}

func checkProxyEvent(t *testing.T, fn string, ev proxyRequest) {
	t.Helper()
	r, ok := routeOf(fn, ev.HTTPMethod, ev.Resource)
	if !ok {
		t.Fatalf("%s %s is not a route of %s", ev.HTTPMethod, ev.Resource, fn)
	}
	rc := ev.RequestContext
	if rc.ResourcePath != ev.Resource || rc.HTTPMethod != ev.HTTPMethod || rc.Stage != StageName || rc.RequestID == "" || rc.APIID == "" {
		t.Errorf("requestContext disagrees with the event: %+v", rc)
	}
	if rc.Path != "/"+StageName+ev.Path {
		t.Errorf("requestContext.path %q, want /%s%s", rc.Path, StageName, ev.Path)
	}
	// The path is the resource with the path parameters filled in.
	params, ok := matchPath(ev.Resource, ev.Path)
	if !ok {
		t.Fatalf("path %q does not match resource %q", ev.Path, ev.Resource)
	}
	if !maps.Equal(params, ev.PathParameters) {
		t.Errorf("pathParameters %v, the path says %v", ev.PathParameters, params)
	}
	for k, v := range ev.Headers {
		if vs := ev.MultiValueHeaders[k]; len(vs) == 0 || vs[len(vs)-1] != v {
			t.Errorf("header %s: %q but multiValueHeaders %q", k, v, vs)
		}
	}
	for k, v := range ev.QueryStringParameters {
		if vs := ev.MultiValueQueryStringParameters[k]; len(vs) == 0 || vs[len(vs)-1] != v {
			t.Errorf("query %s: %q but multiValueQueryStringParameters %q", k, v, vs)
		}
	}
	if r.Public {
		if len(rc.Authorizer) != 0 {
			t.Errorf("%s %s is public: no authorizer context expected, got %v", r.Method, r.Path, rc.Authorizer)
		}
		return
	}
	if _, ok := ev.Headers["Authorization"]; !ok {
		t.Errorf("an authorised route's event without an Authorization header")
	}
	for _, k := range principalKeys {
		if s, ok := rc.Authorizer[k].(string); !ok || s == "" {
			t.Errorf("requestContext.authorizer.%s = %#v, want a non-empty string (the authorizer's context)", k, rc.Authorizer[k])
		}
	}
	if s := rc.Authorizer[httpapi.CtxSuspended]; s != "true" && s != "false" {
		t.Errorf("requestContext.authorizer.suspended = %#v, want \"true\" or \"false\"", s)
	}
	for k := range rc.Authorizer {
		if !slices.Contains(principalKeys, k) && k != "principalId" && k != "integrationLatency" {
			t.Errorf("requestContext.authorizer.%s: the authorizer does not set it", k)
		}
	}
}

func checkAuthorizerEvent(t *testing.T, ev authorizerRequest) {
	t.Helper()
	if ev.Type != "REQUEST" {
		t.Errorf("type %q, want REQUEST", ev.Type)
	}
	arn := regexp.MustCompile(`^arn:aws:execute-api:[a-z0-9-]+:\d{12}:[a-z0-9]+/` + StageName + `/(GET|POST|PUT|DELETE)(/.*)$`).FindStringSubmatch(ev.MethodArn)
	if arn == nil || arn[1] != ev.HTTPMethod || arn[2] != ev.Path {
		t.Errorf("methodArn %q does not name %s %s on stage %s", ev.MethodArn, ev.HTTPMethod, ev.Path, StageName)
	}
	if r, ok := routeOf(routeFunction(ev.HTTPMethod, ev.Resource), ev.HTTPMethod, ev.Resource); !ok || r.Public {
		t.Errorf("%s %s is not an authorised route: API Gateway would not call the authorizer", ev.HTTPMethod, ev.Resource)
	}
	if !strings.HasPrefix(ev.Headers["Authorization"], "Bearer ") {
		t.Errorf("Authorization header %q, want a bearer token (the identity source)", ev.Headers["Authorization"])
	}
}

func checkStreamEvent(t *testing.T, ev events.DynamoDBEvent) {
	t.Helper()
	if len(ev.Records) == 0 {
		t.Fatal("no records")
	}
	var outbox int
	for i, r := range ev.Records {
		if r.EventSource != "aws:dynamodb" || r.Change.SequenceNumber == "" || r.Change.StreamViewType != "NEW_AND_OLD_IMAGES" ||
			!regexp.MustCompile(`^arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/[^/]+/stream/`).MatchString(r.EventSourceArn) {
			t.Errorf("record %d is not a record of the table's stream: %+v", i, r)
		}
		if r.EventName != "INSERT" {
			continue // the event source's filter lets only INSERTs through
		}
		e, ok, err := tablestore.OutboxEvent(r.Change.NewImage)
		if err != nil {
			t.Errorf("record %d: unreadable outbox item: %v", i, err)
		}
		if ok {
			outbox++
			if e.ID == "" || e.Type == "" {
				t.Errorf("record %d: outbox event %+v", i, e)
			}
		}
	}
	if outbox == 0 {
		t.Errorf("no outbox event among the records")
	}
}

// checkEntityStreamEvent checks a stream batch as the usagekeys filters deliver it: records of
// channel entity items, each image readable as the entity it holds.
func checkEntityStreamEvent(t *testing.T, ev events.DynamoDBEvent) {
	t.Helper()
	if len(ev.Records) == 0 {
		t.Fatal("no records")
	}
	for i, r := range ev.Records {
		if r.EventSource != "aws:dynamodb" || r.Change.SequenceNumber == "" || r.Change.StreamViewType != "NEW_AND_OLD_IMAGES" ||
			!regexp.MustCompile(`^arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/[^/]+/stream/`).MatchString(r.EventSourceArn) {
			t.Errorf("record %d is not a record of the table's stream: %+v", i, r)
		}
		img := r.Change.NewImage
		if r.EventName == "REMOVE" {
			img = r.Change.OldImage
		}
		e, ok := tablestore.EntityFromImage(img)
		if !ok || !slices.Contains(keyOwnerTypes, string(e.Type)) {
			t.Errorf("record %d (%s) is not a channel entity's item: the filters would drop it", i, r.EventName)
			continue
		}
		if pk := r.Change.Keys["PK"]; pk.DataType() != events.DataTypeString || pk.String() != "ENT#"+e.ID {
			t.Errorf("record %d: keys %v, image of %s", i, r.Change.Keys, e.ID)
		}
		if r.EventName == "MODIFY" && r.Change.OldImage == nil {
			t.Errorf("record %d: a MODIFY without its old image", i)
		}
	}
}

// checkSQSEvent checks an SQS batch as the event source mapping delivers it; the billing
// worker's bodies must be billing messages.
func checkSQSEvent(t *testing.T, fn string, ev events.SQSEvent) {
	t.Helper()
	if len(ev.Records) == 0 || len(ev.Records) > 10 {
		t.Fatalf("%d records; the mapping delivers 1 to 10", len(ev.Records))
	}
	arn := regexp.MustCompile(`^arn:aws:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$`)
	for i, r := range ev.Records {
		if r.EventSource != "aws:sqs" || !arn.MatchString(r.EventSourceARN) || r.MessageId == "" || r.ReceiptHandle == "" || r.Body == "" ||
			r.Attributes["ApproximateReceiveCount"] == "" {
			t.Errorf("record %d is not an SQS message of an event source mapping: %+v", i, r)
		}
		if fn == "billingworker" {
			m, err := billing.ParseMessage(r.Body)
			if err != nil || !slices.Contains([]string{billing.KindStart, billing.KindFanout, billing.KindTenant, billing.KindClose}, m.Kind) {
				t.Errorf("record %d: not a billing message: %q (%v)", i, r.Body, err)
			}
		}
	}
}

// checkKinesisEvent checks a Kinesis batch: base64 data (decoded by the event's type) that is JSON.
func checkKinesisEvent(t *testing.T, ev events.KinesisEvent) {
	t.Helper()
	if len(ev.Records) == 0 {
		t.Fatal("no records")
	}
	arn := regexp.MustCompile(`^arn:aws:kinesis:[a-z0-9-]+:\d{12}:stream/[A-Za-z0-9_.-]+$`)
	for i, r := range ev.Records {
		if r.EventSource != "aws:kinesis" || r.EventName != "aws:kinesis:record" || !arn.MatchString(r.EventSourceArn) ||
			r.Kinesis.SequenceNumber == "" || r.Kinesis.PartitionKey == "" || !strings.HasSuffix(r.EventID, ":"+r.Kinesis.SequenceNumber) {
			t.Errorf("record %d is not a record of a stream: %+v", i, r)
		}
		if !json.Valid(r.Kinesis.Data) {
			t.Errorf("record %d: data is not JSON: %q", i, r.Kinesis.Data)
		}
	}
}

// checkS3Event checks an object-created notification of the usage bucket, under usage/.
func checkS3Event(t *testing.T, ev events.S3Event) {
	t.Helper()
	if len(ev.Records) == 0 {
		t.Fatal("no records")
	}
	for i, r := range ev.Records {
		if r.EventSource != "aws:s3" || !strings.HasPrefix(r.EventName, "ObjectCreated:") || r.S3.Bucket.Name == "" ||
			r.S3.Bucket.Arn != "arn:aws:s3:::"+r.S3.Bucket.Name || !strings.HasPrefix(r.S3.Object.Key, usageFilePrefix) || r.S3.Object.Size <= 0 {
			t.Errorf("record %d is not an object-created notification under %s: %+v", i, usageFilePrefix, r)
		}
	}
}

func routeFunction(method, path string) string {
	for _, r := range app.AllRoutes() {
		if r.Method == method && r.Path == path {
			return r.Function
		}
	}
	return ""
}

// TestSAMNonTableAccess checks template.yaml's wiring of the functions that are not (only) HTTP:
// their event sources, what they may do besides the table, the usage bucket's notification and
// the billing schedule, against the stack's choices.
func TestSAMNonTableAccess(t *testing.T) {
	res := samTemplate(t)["Resources"].(map[string]any)
	fnProps := func(name string) map[string]any { return props(res[samLogicalID(name)].(map[string]any)) }
	event := func(name, typ string) map[string]any {
		t.Helper()
		for _, ev := range fnProps(name)["Events"].(map[string]any) {
			if e := ev.(map[string]any); e["Type"] == typ {
				return e["Properties"].(map[string]any)
			}
		}
		t.Fatalf("template.yaml %s has no %s event", samLogicalID(name), typ)
		return nil
	}
	other := func(name string) map[string][]string { // action -> resources (JSON)
		out := map[string][]string{}
		for _, pol := range list(fnProps(name)["Policies"]) {
			for _, st := range list(pol.(map[string]any)["Statement"]) {
				s := st.(map[string]any)
				for _, a := range strs(s["Action"]) {
					if strings.HasPrefix(a, "dynamodb:") {
						continue
					}
					for _, r := range list(s["Resource"]) {
						b, _ := json.Marshal(r)
						out[a] = append(out[a], string(b))
					}
				}
			}
		}
		return out
	}
	wantOther := map[string]map[string][]string{
		"usagequeue":  {"sqs:SendMessage": {`{"Fn::GetAtt":["UsageDeadLetters","Arn"]}`}},
		"usagestream": {"sqs:SendMessage": {`{"Fn::GetAtt":["UsageDeadLetters","Arn"]}`}},
		"usagefiles":  {"s3:GetObject": {`{"Fn::Sub":"arn:${AWS::Partition}:s3:::${AWS::StackName}-usage-${AWS::AccountId}-${AWS::Region}/usage/*"}`}, "s3:PutObject": {`{"Fn::Sub":"arn:${AWS::Partition}:s3:::${AWS::StackName}-usage-${AWS::AccountId}-${AWS::Region}/reports/usage/*"}`}},
		"billing":     {"sqs:SendMessage": {`{"Fn::GetAtt":["BillingQueue","Arn"]}`}},
		"billingworker": {"sqs:SendMessage": {`{"Fn::GetAtt":["BillingQueue","Arn"]}`}, "s3:PutObject": {`{"Fn::Sub":"${ExportsBucket.Arn}/exports/*"}`},
			"s3:AbortMultipartUpload": {`{"Fn::Sub":"${ExportsBucket.Arn}/exports/*"}`}},
		"usagekeys": {
			"apigateway:GET":    {apigw("/apikeys"), apigw("/usageplans/${UsagePlanStandard}/keys"), apigw("/usageplans/${UsagePlanPremium}/keys"), apigw("/usageplans/${UsagePlanEnterprise}/keys"), apigw("/usageplans/${UsagePlanStandard}/keys/*"), apigw("/usageplans/${UsagePlanPremium}/keys/*"), apigw("/usageplans/${UsagePlanEnterprise}/keys/*")},
			"apigateway:POST":   {apigw("/apikeys"), apigw("/usageplans/${UsagePlanStandard}/keys"), apigw("/usageplans/${UsagePlanPremium}/keys"), apigw("/usageplans/${UsagePlanEnterprise}/keys")},
			"apigateway:PATCH":  {apigw("/apikeys/*")},
			"apigateway:DELETE": {apigw("/apikeys/*"), apigw("/usageplans/${UsagePlanStandard}/keys/*"), apigw("/usageplans/${UsagePlanPremium}/keys/*"), apigw("/usageplans/${UsagePlanEnterprise}/keys/*")},
		},
	}
	for name := range Functions {
		got := other(name)
		if name == "publisher" {
			continue // SAM's EventBridgePutEventsPolicy
		}
		if w := wantOther[name]; fmt.Sprint(got) != fmt.Sprint(w) && !(len(got) == 0 && len(w) == 0) {
			t.Errorf("template.yaml %s may %v, want %v", name, got, w)
		}
	}

	e := event("usagekeys", "DynamoDB")
	filters := list(e["FilterCriteria"].(map[string]any)["Filters"])
	cdkFilters := mappingOf(t, "usagekeys")["FilterCriteria"].(map[string]any)["Filters"]
	if !mentions(e["Stream"], "Table") || !mentions(e["DestinationConfig"], "UsageKeysDeadLetters") || e["BisectBatchOnFunctionError"] != true ||
		!slices.Equal(strs(e["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) || len(filters) != 2 {
		t.Errorf("template.yaml usagekeys event: %v", e)
	}
	for i, f := range filters {
		var sam, cdk any
		_ = json.Unmarshal([]byte(f.(map[string]any)["Pattern"].(string)), &sam)
		_ = json.Unmarshal([]byte(list(cdkFilters)[i].(map[string]any)["Pattern"].(string)), &cdk)
		if !reflect.DeepEqual(sam, cdk) {
			t.Errorf("template.yaml usagekeys filter %d: %v, the stack: %v", i, sam, cdk)
		}
	}
	uenv := fnProps("usagekeys")["Environment"].(map[string]any)["Variables"].(map[string]any)
	if !mentions(uenv["CMS_USAGE_PLAN_STANDARD"], "UsagePlanStandard") || !mentions(uenv["CMS_USAGE_PLAN_PREMIUM"], "UsagePlanPremium") ||
		!mentions(uenv["CMS_USAGE_PLAN_ENTERPRISE"], "UsagePlanEnterprise") || fmt.Sprint(uenv["CMS_USAGE_KEY_PREFIX"]) != "map[Fn::Sub:${AWS::StackName}-usage-]" {
		t.Errorf("template.yaml usagekeys environment: %v", uenv)
	}

	if e := event("usagequeue", "SQS"); !mentions(e["Queue"], "UsageQueue") || !slices.Equal(strs(e["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) {
		t.Errorf("template.yaml usagequeue event: %v", e)
	}
	if e := event("billingworker", "SQS"); !mentions(e["Queue"], "BillingQueue") || num(e["BatchSize"]) != 10 || !slices.Equal(strs(e["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) {
		t.Errorf("template.yaml billingworker event: %v", e)
	}
	if e := event("usagestream", "Kinesis"); !mentions(e["Stream"], "UsageStream") || !slices.Equal(strs(e["FunctionResponseTypes"]), []string{"ReportBatchItemFailures"}) ||
		e["BisectBatchOnFunctionError"] != true || !mentions(e["DestinationConfig"], "UsageDeadLetters") {
		t.Errorf("template.yaml usagestream event: %v", e)
	}

	q := props(res["BillingQueue"].(map[string]any))
	if num(q["VisibilityTimeout"]) < 6*BillingWorkerTimeout.Seconds() || num(q["RedrivePolicy"].(map[string]any)["maxReceiveCount"]) != 5 {
		t.Errorf("template.yaml BillingQueue: %v", q)
	}
	sch := props(res["BillingSchedule"].(map[string]any))
	tg := sch["Target"].(map[string]any)
	if sch["ScheduleExpression"] != BillingSchedule || sch["ScheduleExpressionTimezone"] != "UTC" || !mentions(tg["Arn"], "BillingQueue") || tg["Input"] != BillingStartMessage {
		t.Errorf("template.yaml BillingSchedule: %v", sch)
	}

	bucket := res["UsageBucket"].(map[string]any)
	lc := list(props(bucket)["NotificationConfiguration"].(map[string]any)["LambdaConfigurations"])
	if len(lc) != 1 || !mentions(lc[0], samLogicalID("usagefiles")) || !strings.Contains(fmt.Sprint(lc[0]), usageFilePrefix) || bucket["DependsOn"] != "UsageBucketInvokesUsagefiles" {
		t.Errorf("template.yaml UsageBucket notification: %v (DependsOn %v)", lc, bucket["DependsOn"])
	}
}
