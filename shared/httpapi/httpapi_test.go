package httpapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/listing"
)

type input struct {
	Name  string      `json:"name"`
	Count int         `json:"count"`
	Qty   json.Number `json:"qty"`
	Inner struct {
		ID string `json:"id"`
	} `json:"inner"`
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		code  string
		field string
	}{
		{"OK", `{"name":"a","count":1,"qty":"1.50","inner":{"id":"x"}}`, "", ""},
		{"OKNumberQuantity", `{"qty":1.5000000000000000001}`, "", ""},
		{"ErrEmpty", ``, "empty_body", ""},
		{"ErrSyntax", `{"name":`, "invalid_json", ""},
		{"ErrUnknownField", `{"nmae":"a"}`, "unknown_field", "nmae"},
		{"ErrNestedUnknownField", `{"inner":{"idd":"a"}}`, "unknown_field", "idd"},
		{"ErrType", `{"count":"x"}`, "invalid_type", "count"},
		{"ErrTrailing", `{"name":"a"} {"name":"b"}`, "invalid_json", ""},
		{"ErrNotObject", `[1,2]`, "invalid_json", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var in input
			err := httpapi.DecodeJSON([]byte(c.body), &in)
			if c.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			_, env := httpapi.ErrorEnvelope(err, nil)
			if env.Errors[0].Code != c.code || env.Errors[0].Field != c.field {
				t.Fatalf("got %+v", env.Errors)
			}
		})
	}
	t.Run("ExactNumbers", func(t *testing.T) {
		var in input
		if err := httpapi.DecodeJSON([]byte(`{"qty":0.1000000000000000000001}`), &in); err != nil {
			t.Fatal(err)
		}
		if in.Qty.String() != "0.1000000000000000000001" {
			t.Fatalf("quantity lost precision: %s", in.Qty)
		}
	})
}

func TestErrorEnvelopeHidesInternals(t *testing.T) {
	status, env := httpapi.ErrorEnvelope(errors.New("ResourceNotFoundException: table cms-prod not found"), nil)
	b, _ := json.Marshal(env)
	if status != http.StatusInternalServerError || strings.Contains(string(b), "cms-prod") || strings.Contains(string(b), "Resource") {
		t.Fatalf("internal error leaked: %d %s", status, b)
	}
	status, _ = httpapi.ErrorEnvelope(apperr.New(apperr.Suspended, "account_suspended", "x"), nil)
	if status != http.StatusForbidden {
		t.Fatalf("suspended must be 403, got %d", status)
	}
}

func TestPager(t *testing.T) {
	p := httpapi.NewPager([]byte("0123456789abcdef0123456789abcdef"))
	q := listing.Query{Search: "acme", PageSize: 5}
	tok := p.Sign("GET /x", "/platform/", q, listing.Cursor{Value: "b", ID: "2"})
	gotQ, after, err := p.Open("GET /x", "/platform/", tok)
	if err != nil || gotQ.Search != "acme" || after.ID != "2" {
		t.Fatalf("round trip: %v %+v %+v", err, gotQ, after)
	}
	cases := map[string]struct{ route, scope, tok string }{
		"ErrOtherRoute":  {"GET /y", "/platform/", tok},
		"ErrOtherScope":  {"GET /x", "/platform/d1/", tok},
		"ErrTampered":    {"GET /x", "/platform/", "X" + tok[1:]},
		"ErrNoSignature": {"GET /x", "/platform/", strings.Split(tok, ".")[0]},
		"ErrGarbage":     {"GET /x", "/platform/", "!!!.???"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := p.Open(c.route, c.scope, c.tok); apperr.KindOf(err) != apperr.Invalid {
				t.Fatalf("want invalid, got %v", err)
			}
		})
	}
}

func TestOpenAPIDescribesRoutes(t *testing.T) {
	routes := []httpapi.Route{
		{Method: "GET", Path: "/api/v1/things", Permission: "things.list", List: true, Result: input{}, Tag: "things"},
		{Method: "POST", Path: "/api/v1/things/{id}/parts", Permission: "things.create", Body: input{}, Result: input{}, Status: 201, Tag: "things"},
	}
	b, err := httpapi.OpenAPI(routes, "t", "1")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	post := paths["/api/v1/things/{id}/parts"].(map[string]any)["post"].(map[string]any)
	if post["x-permission"] != "things.create" || post["responses"].(map[string]any)["201"] == nil {
		t.Fatalf("post: %v", post)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	in := schemas["Httpapi_testinputInput"]
	if in == nil || in.(map[string]any)["additionalProperties"] != false {
		t.Fatalf("request bodies refuse unknown fields: %v", schemas)
	}
}

type optional struct {
	Ptr     *input            `json:"ptr"`
	PtrOmit *input            `json:"ptrOmit,omitempty"`
	List    []string          `json:"list"`
	Map     map[string]string `json:"map,omitempty"`
	Plain   string            `json:"plain"`
}

// A field that encoding/json may write as null is nullable in the document; one it omits when
// empty is not (in answers; a request may send null for any field: it decodes as absent).
func TestOpenAPINullable(t *testing.T) {
	b, err := httpapi.OpenAPI([]httpapi.Route{
		{Method: "POST", Path: "/api/v1/opt", Permission: "opt.create", Body: optional{}, Result: optional{}, Tag: "opt"},
	}, "t", "1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out, in := doc.Components.Schemas["Httpapi_testoptional"].Properties, doc.Components.Schemas["Httpapi_testoptionalInput"].Properties
	for name, want := range map[string]bool{"ptr": true, "ptrOmit": false, "list": true, "map": false, "plain": false} {
		if got := out[name]["nullable"] == true; got != want {
			t.Errorf("answer field %s: nullable %v, want %v (%v)", name, got, want, out[name])
		}
		if got := in[name]["nullable"] == true; !got {
			t.Errorf("request field %s: nullable %v (%v)", name, got, in[name])
		}
	}
	if ref, ok := out["ptr"]["allOf"].([]any); !ok || len(ref) != 1 || out["ptr"]["$ref"] != nil {
		t.Errorf("a nullable reference is wrapped in allOf: %v", out["ptr"])
	}
}

// An empty list answers [] and never null.
func TestEmptyListIsAnArray(t *testing.T) {
	api := httpapi.New(httpapi.NewPager([]byte("0123456789abcdef0123456789abcdef")), nil, nil)
	api.Handle(httpapi.Route{Method: "GET", Path: "/things", Public: true, List: true, Result: input{}},
		func(r *httpapi.Request) (httpapi.Response, error) {
			var none []input
			return r.Page(none, listing.Query{PageSize: 50}, nil), nil
		})
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/things", nil))
	if !strings.Contains(rec.Body.String(), `"data":[]`) {
		t.Fatalf("got %s", rec.Body.String())
	}
}
