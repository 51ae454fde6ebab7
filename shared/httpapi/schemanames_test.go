package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/httpapi"
)

// Types whose names collide under the naming rules: Gadget in a request and GadgetInput are both
// "…GadgetInput" at first sight, and GadgetInput is that in both its forms.
type (
	Gadget      struct{ A string }
	GadgetInput struct{ B string }
	// Httpapi_testStutter starts with its package's name: it is not prefixed twice.
	Httpapi_testStutter struct{ C string }
	// Error is prefixed with its package like any type: it never takes the place of the
	// document's own Error schema.
	Error struct{ D string }
)

func TestOpenAPISchemaNames(t *testing.T) {
	routes := []httpapi.Route{
		{Method: "POST", Path: "/a", Permission: "x.y", Body: Gadget{}, Result: Gadget{}, Tag: "t"},
		{Method: "POST", Path: "/b", Permission: "x.y", Body: GadgetInput{}, Result: GadgetInput{}, Tag: "t"},
		{Method: "POST", Path: "/c", Permission: "x.y", Body: Httpapi_testStutter{}, Result: Error{}, Tag: "t"},
	}
	b, err := httpapi.OpenAPI(routes, "t", "1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema struct {
						Properties struct {
							Data struct {
								Ref string `json:"$ref"`
							} `json:"data"`
						} `json:"properties"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties           map[string]any `json:"properties"`
				AdditionalProperties *bool          `json:"additionalProperties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	const js = "application/json"
	type use struct {
		ref, field string
		request    bool
	}
	uses := map[string]use{}
	for path, field := range map[string][2]string{"/a": {"A", "A"}, "/b": {"B", "B"}, "/c": {"C", "D"}} {
		op := doc.Paths[path]["post"]
		uses[path+" body"] = use{op.RequestBody.Content[js].Schema.Ref, field[0], true}
		uses[path+" answer"] = use{op.Responses["200"].Content[js].Schema.Properties.Data.Ref, field[1], false}
	}
	want := map[string]string{
		"/a body": "Httpapi_testGadgetInput", "/a answer": "Httpapi_testGadget",
		"/b body": "Httpapi_testGadgetInputRequest", "/b answer": "Httpapi_testGadgetInputOutput",
		"/c body": "Httpapi_testStutterInput", "/c answer": "Httpapi_testError",
	}
	seen := map[string]string{}
	for what, u := range uses {
		name := strings.TrimPrefix(u.ref, "#/components/schemas/")
		if name != want[what] {
			t.Errorf("%s: schema %q, want %q", what, name, want[what])
		}
		if other, ok := seen[name]; ok {
			t.Errorf("%s and %s share the schema %s", what, other, name)
		}
		seen[name] = what
		if strings.HasSuffix(name, "InputInput") {
			t.Errorf("%s: %s repeats its suffix", what, name)
		}
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("%s: no component %s", what, name)
			continue
		}
		if _, ok := s.Properties[u.field]; !ok || len(s.Properties) != 1 {
			t.Errorf("%s: %s describes %v, want field %s", what, name, s.Properties, u.field)
		}
		if refuses := s.AdditionalProperties != nil && !*s.AdditionalProperties; refuses != u.request {
			t.Errorf("%s: %s refuses unknown fields: %v", what, name, refuses)
		}
	}
	if _, ok := doc.Components.Schemas["Error"].Properties["code"]; !ok {
		t.Errorf("the document's own Error schema was replaced: %v", doc.Components.Schemas["Error"])
	}
}
