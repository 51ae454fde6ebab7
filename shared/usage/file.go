package usage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
)

// Format is a usage file's format.
type Format string

// The file formats (docs/usage.md).
const (
	// CSV has a header row naming its columns (any order, any case): id, tenantId,
	// subscriptionId, sku, quantity, timestamp, region, properties (a JSON object).
	CSV Format = "csv"
	// JSONLines has one JSON record per line; blank lines are skipped.
	JSONLines Format = "jsonl"
)

// MaxLineLen bounds one line of a usage file; a longer line is rejected alone.
const MaxLineLen = 64 << 10

// columns maps the lower-case CSV column names to the record's fields.
var columns = map[string]string{
	"id": "id", "tenantid": "tenantId", "subscriptionid": "subscriptionId", "sku": "sku",
	"quantity": "quantity", "timestamp": "timestamp", "region": "region", "properties": "properties",
}

var requiredColumns = []string{"id", "tenantId", "sku", "quantity", "timestamp"}

// FileReader reads the records of a usage file, one Item per record line, streaming: a file of
// any size is read with constant memory.
type FileReader struct {
	format     Format
	compressed bool
	lines      int // records read so far (data lines, rejected ones included)

	csv       *csv.Reader
	cols      []string // the field of each CSV column
	headerErr *apperr.FieldError

	br      *bufio.Reader
	lineNum int
}

// OpenFile starts reading a usage file. Gzip is recognised by its magic bytes; the format by
// the name (".csv", ".jsonl", ".ndjson", ".json", before any ".gz"), otherwise by the first
// character ('{' is JSON Lines). It fails only when the file cannot be read (a corrupt gzip
// header): a bad CSV header is reported on every line by Next.
func OpenFile(r io.Reader, name string) (*FileReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	f := &FileReader{}
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		f.compressed = true
		br = bufio.NewReaderSize(gz, 64<<10)
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xef, 0xbb, 0xbf}) {
		_, _ = br.Discard(3)
	}
	base := strings.ToLower(path.Base(name))
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".gz"), ".gzip")
	switch path.Ext(base) {
	case ".csv":
		f.format = CSV
	case ".jsonl", ".ndjson", ".json":
		f.format = JSONLines
	default:
		f.format = CSV
		if first := firstNonSpace(br); first == '{' {
			f.format = JSONLines
		}
	}
	if f.format == JSONLines {
		f.br = br
		return f, nil
	}
	f.csv = csv.NewReader(br)
	f.csv.FieldsPerRecord = -1
	f.csv.ReuseRecord = true
	header, err := f.csv.Read()
	switch {
	case errors.Is(err, io.EOF):
		return f, nil // an empty file: no records
	case err != nil:
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return nil, err
		}
		f.headerErr = &apperr.FieldError{Code: "bad_header", Message: "line 1: the header row is not valid CSV"}
		return f, nil
	}
	f.headerErr = f.readHeader(header)
	return f, nil
}

func firstNonSpace(br *bufio.Reader) byte {
	for n := 1; n <= 512; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			return 0
		}
		if c := b[n-1]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
		if err != nil {
			return 0
		}
	}
	return 0
}

func (f *FileReader) readHeader(header []string) *apperr.FieldError {
	f.cols = make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		name := strings.TrimSpace(h)
		field, ok := columns[strings.ToLower(name)]
		switch {
		case !ok:
			return &apperr.FieldError{Field: name, Code: "bad_header", Message: fmt.Sprintf("line 1: unknown column %q (known: id, tenantId, subscriptionId, sku, quantity, timestamp, region, properties)", name)}
		case seen[field]:
			return &apperr.FieldError{Field: field, Code: "bad_header", Message: fmt.Sprintf("line 1: column %q appears twice", name)}
		}
		seen[field] = true
		f.cols[i] = field
	}
	for _, c := range requiredColumns {
		if !seen[c] {
			return &apperr.FieldError{Field: c, Code: "bad_header", Message: fmt.Sprintf("line 1: the header has no %q column", c)}
		}
	}
	return nil
}

// Format returns the file's format.
func (f *FileReader) Format() Format { return f.format }

// Compressed reports a gzip file.
func (f *FileReader) Compressed() bool { return f.compressed }

// Records returns how many record lines were read so far.
func (f *FileReader) Records() int { return f.lines }

// Next returns the next record line as an Item whose Ref is "line <n>" (1-based, the header
// is line 1 of a CSV file). It returns io.EOF at the end, and any other error when the file
// cannot be read further (a truncated gzip stream).
func (f *FileReader) Next() (Item, error) {
	if f.format == JSONLines {
		return f.nextJSON()
	}
	if f.csv == nil {
		return Item{}, io.EOF
	}
	fields, err := f.csv.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return Item{}, io.EOF
	case errors.As(err, &pe) && !errors.Is(pe.Err, csv.ErrFieldCount):
		f.lines++
		return Item{Ref: fmt.Sprintf("line %d", pe.StartLine), Errs: []apperr.FieldError{{Code: "invalid_csv", Message: "the line is not valid CSV: " + pe.Err.Error()}}}, nil
	case err != nil && (pe == nil):
		return Item{}, err
	}
	line, _ := f.csv.FieldPos(0)
	f.lines++
	it := Item{Ref: fmt.Sprintf("line %d", line)}
	if f.headerErr != nil {
		it.Errs = []apperr.FieldError{*f.headerErr}
		return it, nil
	}
	if len(fields) != len(f.cols) {
		it.Errs = []apperr.FieldError{{Code: "field_count", Message: fmt.Sprintf("the line has %d fields, the header %d", len(fields), len(f.cols))}}
		// Still read the id when it is there, so that the report can name the record.
	}
	for i, v := range fields {
		if i >= len(f.cols) {
			break
		}
		switch f.cols[i] {
		case "id":
			it.Input.ID = v
		case "tenantId":
			it.Input.TenantID = v
		case "subscriptionId":
			it.Input.SubscriptionID = v
		case "sku":
			it.Input.SKU = v
		case "quantity":
			it.Input.Quantity = money.Text(v)
		case "timestamp":
			it.Input.Timestamp = v
		case "region":
			it.Input.Region = v
		case "properties":
			if v != "" {
				it.Input.Properties = []byte(v)
			}
		}
	}
	return it, nil
}

func (f *FileReader) nextJSON() (Item, error) {
	for {
		line, tooLong, err := f.readLine()
		if err != nil {
			return Item{}, err
		}
		f.lineNum++
		ref := fmt.Sprintf("line %d", f.lineNum)
		if tooLong {
			f.lines++
			return Item{Ref: ref, Errs: []apperr.FieldError{{Code: "line_too_long", Message: fmt.Sprintf("the line is longer than %d bytes", MaxLineLen)}}}, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f.lines++
		raw := append([]byte(nil), line...)
		it := Item{Ref: ref, Raw: raw}
		it.Input, it.Errs = DecodeRecord(raw)
		return it, nil
	}
}

// readLine returns the next line without its end of line. A line over MaxLineLen is consumed
// to its end and reported as tooLong. It returns io.EOF after the last line.
func (f *FileReader) readLine() (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		part, isPrefix, err := f.br.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (buf != nil || tooLong) {
				return buf, tooLong, nil
			}
			return nil, false, err
		}
		if !tooLong {
			if len(buf)+len(part) > MaxLineLen {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, part...)
			}
		}
		if !isPrefix {
			if buf == nil {
				buf = []byte{}
			}
			return buf, tooLong, nil
		}
	}
}
