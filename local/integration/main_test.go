// Package integration_test drives the API over HTTP through the local runner (the real handlers
// and the real authorizer) against the emulators: DynamoDB Local and moto, or AWS_ENDPOINT_URL.
package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/runner"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/tablestore"
)

const (
	adminEmail    = "admin@platform.test"
	adminPassword = "correct horse battery staple"
)

var (
	srv  *httptest.Server
	deps *app.Deps
	// itStack and itAWS are the emulators and their configuration (billing_test.go builds its
	// own clock-shifted server on them).
	itStack *emulator.Stack
	itAWS   aws.Config
	idp     *testIdP
	quiet   = testLogger()
)

// testLogger is silent unless CMS_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CMS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	stack, err := emulator.Start(ctx, emulator.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulators:", err)
		return 1
	}
	defer stack.Close()
	awsCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aws config:", err)
		return 1
	}
	itStack, itAWS = stack, awsCfg
	idp = startIdP()
	defer idp.Close()

	cfg := app.Defaults()
	cfg.Table = "cms-it-" + ids.New("t")
	cfg.EventBus = "cms-it-" + ids.New("bus")
	cfg.Providers = []auth.Provider{idp.provider()}
	cfg.LinkByEmail = true
	st := tablestore.NewFromConfig(awsCfg, cfg.Table, stack.DynamoDBOptions())
	if err := tablestore.CreateTable(ctx, st.DB(), cfg.Table); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		return 1
	}
	deps, err = app.New(ctx, cfg, awsCfg, quiet, stack.DynamoDBOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "deps:", err)
		return 1
	}
	if _, err := deps.Bootstrap(ctx, adminEmail, adminPassword); err != nil {
		fmt.Fprintln(os.Stderr, "bootstrap:", err)
		return 1
	}
	// The outbox publisher on the table's stream, the bus and a queue to read it (events_test.go).
	stopEvents, err := setupEvents(ctx, stack, awsCfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "events:", err)
		return 1
	}
	defer stopEvents()
	// The usage channels fed as Lambda's event sources would (usage_test.go).
	stopUsage, err := setupUsage(ctx, stack, awsCfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage:", err)
		return 1
	}
	defer stopUsage()
	rn, err := runner.New(deps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		return 1
	}
	srv = httptest.NewServer(rn)
	defer srv.Close()
	return m.Run()
}

// envelope is the decoded response body.
type envelope struct {
	Code   int             `json:"code"`
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"errors"`
	Page *struct {
		PageSize int    `json:"pageSize"`
		Next     string `json:"next"`
	} `json:"page"`
	status int
	raw    string
}

func (e envelope) hasError(code, field string) bool {
	for _, er := range e.Errors {
		if (code == "" || er.Code == code) && (field == "" || er.Field == field) {
			return true
		}
	}
	return false
}

// client calls the API with a token (on base, default the shared test server).
type client struct {
	tb    testing.TB
	token string
	base  string
}

// do calls the API and checks the call against the served OpenAPI document (checkCall): any
// disagreement fails the calling test.
func (c client) do(method, path string, body any, headers ...string) envelope {
	c.tb.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.tb.Fatal(err)
		}
		raw = j
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(raw)
	}
	base := c.base
	if base == "" {
		base = srv.URL
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	var env envelope
	if err := json.Unmarshal(out, &env); err != nil {
		c.tb.Fatalf("%s %s: %d, body is not an envelope: %s", method, path, res.StatusCode, out)
	}
	env.status, env.raw = res.StatusCode, string(out)
	if env.Code != res.StatusCode || env.Errors == nil {
		c.tb.Fatalf("%s %s: envelope code %d for status %d, errors=%v: %s", method, path, env.Code, res.StatusCode, env.Errors, out)
	}
	c.checkCall(req, raw, res, out, env)
	return env
}

// checkCall holds one call to the served OpenAPI document. A path that no route serves (the
// router's "No such route.") is not the document's business.
func (c client) checkCall(req *http.Request, reqBody []byte, res *http.Response, resBody []byte, env envelope) {
	c.tb.Helper()
	if res.StatusCode == http.StatusNotFound && env.hasError("not_found", "") && strings.Contains(env.raw, "No such route.") {
		return
	}
	doc, err := servedDoc()
	if err != nil {
		c.tb.Fatalf("/swagger.json: %v", err)
	}
	for _, p := range doc.check(req.Method, req.URL, req.Header, reqBody, res.StatusCode, res.Header, resBody) {
		c.tb.Errorf("OpenAPI: %s %s: %s\nrequest: %s\nanswer: %s", req.Method, req.URL.RequestURI(), p, reqBody, resBody)
	}
}

// must calls the API and fails the test unless the status is want; it decodes data into out.
func (c client) must(want int, method, path string, body any, out any) envelope {
	c.tb.Helper()
	env := c.do(method, path, body)
	if env.status != want {
		c.tb.Fatalf("%s %s: status %d, want %d: %s", method, path, env.status, want, env.raw)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			c.tb.Fatalf("%s %s: data: %v", method, path, err)
		}
	}
	return env
}

type session struct {
	Token            string    `json:"token"`
	RefreshToken     string    `json:"refreshToken"`
	ExpiresAt        time.Time `json:"expiresAt"`
	RefreshExpiresAt time.Time `json:"refreshExpiresAt"`
}

func login(tb testing.TB, email, password string) client {
	tb.Helper()
	var s session
	client{tb: tb}.must(200, "POST", "/api/v1/auth/login", map[string]string{"email": email, "password": password}, &s)
	return client{tb: tb, token: s.Token}
}

var (
	adminOnce sync.Once
	adminTok  string
)

func admin(tb testing.TB) client {
	adminOnce.Do(func() { adminTok = login(tb, adminEmail, adminPassword).token })
	return client{tb: tb, token: adminTok}
}

type entity struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	BillingID string `json:"billingId"`
	Currency  string `json:"currency"`
	Parent    *struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"parent"`
	Markups []struct {
		Markup    string `json:"markup"`
		StartDate string `json:"startDate"`
	} `json:"markups"`
	NbOfTenants       *int `json:"nbOfTenants"`
	NbOfSubscriptions *int `json:"nbOfSubscriptions"`
}

type user struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Role   string `json:"role"`
	Status string `json:"status"`
	Scope  struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"scope"`
}

func create(tb testing.TB, c client, plural string, body map[string]any) entity {
	tb.Helper()
	var e entity
	c.must(201, "POST", "/api/v1/"+plural, body, &e)
	return e
}

func parent(typ, id string) map[string]string { return map[string]string{"type": typ, "id": id} }

func uniq(prefix string) string { return prefix + "-" + ids.New("x")[2:] }

// mkUser creates an active user with a password and returns a client signed in as them.
func mkUser(tb testing.TB, c client, role, scopeID string) (user, client) {
	tb.Helper()
	email := strings.ToLower(uniq(role)) + "@example.test"
	const pw = "a long enough password"
	var u user
	c.must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "T", "lastName": "User",
		"role": role, "scopeId": scopeID, "password": pw}, &u)
	return u, login(tb, email, pw)
}
