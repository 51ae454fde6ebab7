package usage_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/usage"
)

type line struct {
	ref  string
	id   string
	errs []string
}

func readAll(t *testing.T, name string, content []byte) (*usage.FileReader, []line) {
	t.Helper()
	f, err := usage.OpenFile(bytes.NewReader(content), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []line
	for {
		it, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		l := line{ref: it.Ref, id: it.Input.ID}
		if len(it.Errs) == 0 {
			_, errs := it.Input.Parse(now)
			l.errs = fields(errs)
		} else {
			l.errs = fields(it.Errs)
		}
		out = append(out, l)
	}
	return f, out
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const csvFile = "\ufeffId,TenantID,sku,quantity,timestamp,properties\r\n" +
	"a,tnt_1,gb,1.5,2026-10-01T00:00:00Z,\r\n" +
	"b,tnt_1,gb,-2,2026-10-01T00:00:00Z,\r\n" +
	"c,tnt_1,gb,3\r\n" +
	"\r\n" +
	"d,tnt_1,gb,4,2026-10-01T00:00:00Z,\"{\"\"vm\"\":\"\"x\"\"}\"\r\n"

const jsonlFile = `{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1.5,"timestamp":"2026-10-01T00:00:00Z"}
{"id":"b","tenantId":"tnt_1","sku":"gb","quantity":"-2","timestamp":"2026-10-01T00:00:00Z"}

{"id":"c","tenantId":"tnt_1",
{"id":"d","tenantId":"tnt_1","sku":"gb","quantity":4,"timestamp":"2026-10-01T00:00:00Z","properties":{"vm":"x"}}`

func TestFiles(t *testing.T) {
	wantCSV := []line{
		{"line 2", "a", nil}, {"line 3", "b", []string{"quantity:negative"}},
		{"line 4", "c", []string{":field_count"}}, {"line 6", "d", nil},
	}
	wantJSONL := []line{
		{"line 1", "a", nil}, {"line 2", "b", []string{"quantity:negative"}},
		{"line 4", "", []string{":invalid_json"}}, {"line 5", "d", nil},
	}
	cases := []struct {
		name       string
		file       string
		content    []byte
		format     usage.Format
		compressed bool
		want       []line
	}{
		{"CSV", "usage/a.csv", []byte(csvFile), usage.CSV, false, wantCSV},
		{"CSVGzip", "usage/a.csv.gz", gz(t, []byte(csvFile)), usage.CSV, true, wantCSV},
		{"CSVGzipWithoutExtension", "usage/a", gz(t, []byte(csvFile)), usage.CSV, true, wantCSV},
		{"JSONLines", "usage/a.jsonl", []byte(jsonlFile), usage.JSONLines, false, wantJSONL},
		{"NDJSONGzip", "usage/a.ndjson.GZ", gz(t, []byte(jsonlFile)), usage.JSONLines, true, wantJSONL},
		{"JSONLinesSniffed", "usage/a.txt", []byte("\n" + jsonlFile), usage.JSONLines, false,
			[]line{{"line 2", "a", nil}, {"line 3", "b", []string{"quantity:negative"}}, {"line 5", "", []string{":invalid_json"}}, {"line 6", "d", nil}}},
		{"Empty", "usage/e.csv", nil, usage.CSV, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, got := readAll(t, tc.file, tc.content)
			if f.Format() != tc.format || f.Compressed() != tc.compressed {
				t.Errorf("format %s compressed %v", f.Format(), f.Compressed())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("lines %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].ref != tc.want[i].ref || got[i].id != tc.want[i].id || strings.Join(got[i].errs, ",") != strings.Join(tc.want[i].errs, ",") {
					t.Errorf("line %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if f.Records() != len(tc.want) {
				t.Errorf("Records() = %d", f.Records())
			}
		})
	}
	t.Run("ErrUnknownColumnRejectsEveryLine", func(t *testing.T) {
		_, got := readAll(t, "x.csv", []byte("id,tenant,sku,quantity,timestamp\na,t,gb,1,2026-10-01T00:00:00Z\nb,t,gb,1,2026-10-01T00:00:00Z\n"))
		if len(got) != 2 || got[0].errs[0] != "tenant:bad_header" || got[1].errs[0] != "tenant:bad_header" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrMissingColumn", func(t *testing.T) {
		_, got := readAll(t, "x.csv", []byte("id,tenantId,sku,quantity\na,t,gb,1\n"))
		if len(got) != 1 || got[0].errs[0] != "timestamp:bad_header" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrBadQuoteThenGoodLine", func(t *testing.T) {
		_, got := readAll(t, "x.csv", []byte("id,tenantId,sku,quantity,timestamp\na\"b,tnt_1,gb,1,2026-10-01T00:00:00Z\nc,tnt_1,gb,1,2026-10-01T00:00:00Z\n"))
		if len(got) != 2 || got[0].errs[0] != ":invalid_csv" || got[1].id != "c" || len(got[1].errs) != 0 {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrLongLine", func(t *testing.T) {
		content := `{"id":"` + strings.Repeat("x", usage.MaxLineLen) + `"}` + "\n" + `{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1,"timestamp":"2026-10-01T00:00:00Z"}`
		_, got := readAll(t, "x.jsonl", []byte(content))
		if len(got) != 2 || got[0].errs[0] != ":line_too_long" || got[1].id != "a" || len(got[1].errs) != 0 {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrTruncatedGzip", func(t *testing.T) {
		z := gz(t, []byte(jsonlFile+"\n"+jsonlFile))
		f, err := usage.OpenFile(bytes.NewReader(z[:len(z)-10]), "x.jsonl.gz")
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, err := f.Next()
			if errors.Is(err, io.EOF) {
				t.Fatal("a truncated gzip stream read to its end without error")
			}
			if err != nil {
				return
			}
		}
	})
}
