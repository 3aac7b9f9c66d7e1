package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Fields is one lead as a mapping produced it: canonical field (one of
// CanonicalFields) → value as text, trimmed, valid UTF-8. A field the source
// did not send is absent, so reading it gives "".
type Fields map[string]string

// MappingError reports an authentic body that cannot be mapped to leads:
// it never will, so the normalizer publishes lead.rejected.<source> with
// Reason. Reason names what was wrong (the field, the templates tried),
// never personal data.
type MappingError struct {
	Reason string
}

func (e *MappingError) Error() string { return "map lead: " + e.Reason }

func mappingErrorf(format string, args ...any) *MappingError {
	return &MappingError{Reason: fmt.Sprintf(format, args...)}
}

// Mapper maps the bodies of one source to Fields. It is compiled once, at
// start, and safe for concurrent use.
type Mapper struct {
	spec      Spec
	items     *vm.Program
	fields    []compiledField // in the order of CanonicalFields
	templates []compiledTemplate
}

type compiledField struct {
	name    string
	program *vm.Program
}

type compiledTemplate struct {
	name    string
	from    *regexp.Regexp
	subject *regexp.Regexp
	fields  []templateField // sorted by name
}

type templateField struct {
	name string
	re   *regexp.Regexp
}

// env is what an expression sees. Unknown names are compile errors.
type env struct {
	// Body is the decoded payload: any JSON value (numbers as json.Number,
	// text as written), a form (key → first value, and "all" → key → every
	// value), or for e-mail the same map as Email.
	Body any `expr:"body"`
	// Item is the current item when the spec has Items (and the lead given
	// to MapItems).
	Item any `expr:"item"`
	// Fields holds the captures of the e-mail template that applied, or a
	// Facebook lead's field_data (name → first value).
	Fields map[string]any `expr:"fields"`
	// Lead is a Facebook lead's own attributes: id, created_time, ad_id,
	// form_id, campaign_id, …
	Lead map[string]any `expr:"lead"`
	// Email is from, to, subject, text, html (and template, the name of the
	// template that applied).
	Email map[string]any `expr:"email"`
}

// rejectError is raised by reject(reason) in an expression.
type rejectError struct{ reason string }

func (e *rejectError) Error() string { return e.reason }

// maxItems bounds the leads in one delivery.
const maxItems = 1000

// NewMapper compiles the spec's items, mapping and e-mail templates. Errors
// name the source and the field, e.g.
// `source "zillow": mapping.email: unknown name emial (1:6)`.
func NewMapper(spec Spec) (*Mapper, error) {
	m := &Mapper{spec: spec}
	var errs []error
	bad := func(field string, err error) {
		errs = append(errs, fmt.Errorf("source %q: %s: %s", spec.Name, field, firstLine(err)))
	}
	if spec.Items != "" {
		p, err := compile(spec.Items)
		if err != nil {
			bad("items", err)
		}
		m.items = p
	}
	for field := range spec.Mapping {
		if !slices.Contains(CanonicalFields, field) {
			bad("mapping."+field, fmt.Errorf("not a canonical lead field (one of %s)", strings.Join(CanonicalFields, ", ")))
		}
	}
	for _, field := range CanonicalFields {
		src, ok := spec.Mapping[field]
		if !ok || strings.TrimSpace(src) == "" {
			continue
		}
		p, err := compile(src)
		if err != nil {
			bad("mapping."+field, err)
			continue
		}
		m.fields = append(m.fields, compiledField{name: field, program: p})
	}
	for i, t := range spec.Templates {
		ct := compiledTemplate{name: t.Name}
		if ct.name == "" {
			ct.name = fmt.Sprintf("templates[%d]", i)
		}
		var err error
		if ct.from, err = regexp.Compile(t.FromPattern); err != nil {
			bad(fmt.Sprintf("templates[%d].from", i), err)
		}
		if ct.subject, err = regexp.Compile(t.SubjectPattern); err != nil {
			bad(fmt.Sprintf("templates[%d].subject", i), err)
		}
		for _, name := range slices.Sorted(maps.Keys(t.Fields)) {
			re, err := regexp.Compile(t.Fields[name])
			switch {
			case err != nil:
				bad(fmt.Sprintf("templates[%d].fields.%s", i, name), err)
			case re.NumSubexp() != 1:
				bad(fmt.Sprintf("templates[%d].fields.%s", i, name), errors.New("needs exactly one capture group"))
			default:
				ct.fields = append(ct.fields, templateField{name: name, re: re})
			}
		}
		m.templates = append(m.templates, ct)
	}
	if spec.Format == FormatEmail && len(spec.Templates) == 0 {
		bad("templates", errors.New("format email needs at least one template"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Spec returns the source the mapper was compiled from.
func (m *Mapper) Spec() Spec { return m.spec }

func compile(src string) (*vm.Program, error) {
	return expr.Compile(src, append([]expr.Option{expr.Env(env{})}, helpers...)...)
}

// firstLine drops expr's source snippet, keeping the message and position.
func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Map decodes body per the spec's format and returns one Fields per lead.
// An authentic body that cannot be mapped returns a *MappingError.
func (m *Mapper) Map(body []byte, contentType string) ([]Fields, error) {
	var e env
	switch m.spec.Format {
	case FormatJSON, "":
		v, err := decodeJSON(body)
		if err != nil {
			return nil, mappingErrorf("invalid JSON: %v", err)
		}
		e.Body = v
	case FormatForm:
		v, err := decodeForm(body)
		if err != nil {
			return nil, err
		}
		e.Body = v
	case FormatEmail:
		msg, err := decodeEmail(body, contentType)
		if err != nil {
			return nil, err
		}
		fields, err := m.applyTemplate(msg)
		if err != nil {
			return nil, err
		}
		e.Body, e.Email, e.Fields = msg, msg, fields
	case FormatFacebookLeadgen:
		return nil, fmt.Errorf("source %q: format %s: the leads are read from the Graph API and mapped with MapItems", m.spec.Name, m.spec.Format)
	default:
		return nil, fmt.Errorf("source %q: format %q is not supported", m.spec.Name, m.spec.Format)
	}
	if m.items == nil {
		f, err := m.mapOne(e)
		if err != nil {
			return nil, err
		}
		return []Fields{f}, nil
	}
	items, err := m.runItems(e)
	if err != nil {
		return nil, err
	}
	return m.mapEach(len(items), func(i int) env {
		e.Item = items[i]
		return e
	})
}

// mapEach maps n items, the i-th with the environment envOf(i); an error
// names the item when there are several.
func (m *Mapper) mapEach(n int, envOf func(i int) env) ([]Fields, error) {
	out := make([]Fields, 0, n)
	for i := range n {
		f, err := m.mapOne(envOf(i))
		if err != nil {
			var me *MappingError
			if errors.As(err, &me) && n > 1 {
				me.Reason = fmt.Sprintf("item %d: %s", i, me.Reason)
			}
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// MapItems maps items already decoded elsewhere (a Facebook lead read from
// the Graph API): each item is both item and lead in the expressions, and
// its "fields" entry (field_data, name → first value) is fields.
func (m *Mapper) MapItems(items []map[string]any) ([]Fields, error) {
	return m.mapEach(len(items), func(i int) env {
		it := items[i]
		e := env{Item: it, Lead: it, Body: it}
		switch f := it["fields"].(type) {
		case map[string]any:
			e.Fields = f
		case map[string]string:
			e.Fields = make(map[string]any, len(f))
			for k, v := range f {
				e.Fields[k] = v
			}
		}
		return e
	})
}

func (m *Mapper) runItems(e env) ([]any, error) {
	v, err := expr.Run(m.items, e)
	if err != nil {
		return nil, runError("items", err)
	}
	rv := reflect.ValueOf(v)
	if v == nil || (rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) {
		return nil, mappingErrorf("items: %s is not a list of leads", describe(v))
	}
	if rv.Len() > maxItems {
		return nil, mappingErrorf("items: %d leads in one delivery, at most %d", rv.Len(), maxItems)
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, nil
}

func (m *Mapper) mapOne(e env) (Fields, error) {
	if e.Fields == nil {
		e.Fields = map[string]any{}
	}
	if e.Lead == nil {
		e.Lead = map[string]any{}
	}
	if e.Email == nil {
		e.Email = map[string]any{}
	}
	out := make(Fields, len(m.fields))
	for _, f := range m.fields {
		v, err := expr.Run(f.program, e)
		if err != nil {
			return nil, runError("mapping."+f.name, err)
		}
		s, err := Text(v)
		if err != nil {
			return nil, mappingErrorf("mapping.%s: %v", f.name, err)
		}
		if s != "" {
			out[f.name] = s
		}
	}
	return out, nil
}

// runError turns an expression's runtime error into a *MappingError that
// names the field; reject(reason) gives its reason as written.
func runError(field string, err error) error {
	var rej *rejectError
	if errors.As(err, &rej) {
		return &MappingError{Reason: rej.reason}
	}
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
	}
	return mappingErrorf("%s: %s", field, msg)
}

// Text renders a value an expression produced as the text of a field:
// numbers as written (850000, 850000.5, never 8.5e+05), trimmed, invalid
// UTF-8 replaced. nil is "". A list or an object is an error.
func Text(v any) (string, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case int32:
		s = strconv.FormatInt(int64(x), 10)
	case uint:
		s = strconv.FormatUint(uint64(x), 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(x), 'f', -1, 32)
	default:
		return "", fmt.Errorf("want text, got %s", describe(v))
	}
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s, nil
}

// describe names a value's kind for a reason, without its content.
func describe(v any) string {
	if v == nil {
		return "nothing (nil)"
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "a boolean"
	default:
		return "a " + reflect.TypeOf(v).String()
	}
}

// decodeJSON decodes exactly one JSON value, numbers kept as written
// (json.Number), and refuses trailing data.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// decodeForm reads application/x-www-form-urlencoded: each key → its first
// value, and "all" → key → every value.
func decodeForm(b []byte) (map[string]any, error) {
	if !utf8.Valid(b) {
		b = []byte(strings.ToValidUTF8(string(b), "\uFFFD"))
	}
	vals, err := url.ParseQuery(string(b))
	if err != nil && len(vals) == 0 {
		return nil, mappingErrorf("invalid form body: %v", err)
	}
	out := make(map[string]any, len(vals)+1)
	all := make(map[string]any, len(vals))
	for k, vs := range vals {
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		all[k] = list
		if len(vs) > 0 {
			out[k] = vs[0]
		}
	}
	out["all"] = all
	return out, nil
}

// emailFields are the SendGrid Inbound Parse form fields kept.
var emailFields = []string{"from", "to", "cc", "subject", "text", "html", "headers", "envelope", "charsets", "sender_ip"}

// maxEmailField bounds one form field of an inbound e-mail.
const maxEmailField = 2 << 20

// WalkMultipart reads a multipart/form-data body (format email) part by
// part, calling each, when not nil, with every part in order. each may read
// the part or not: what it leaves is read and discarded, so that a part
// malformed anywhere is an error. The body is an error too when contentType
// is not multipart/form-data with a boundary, or when it has no part. The
// gateway checks a body with it, and the normalizer reads the same body
// with it, so they agree on what is well-formed.
func WalkMultipart(body []byte, contentType string, each func(*multipart.Part) error) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return fmt.Errorf("content type %q is not multipart/form-data with a boundary", contentType)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	parts := 0
	for ; ; parts++ {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if each != nil {
			err = each(p)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, p)
		}
		_ = p.Close()
		if err != nil {
			return err
		}
	}
	if parts == 0 {
		return errors.New("no part")
	}
	return nil
}

// decodeEmail reads a SendGrid Inbound Parse post (multipart/form-data,
// the default "parsed" mode): from, to, subject, text, html, headers and
// envelope. Attachments are skipped.
func decodeEmail(body []byte, contentType string) (map[string]any, error) {
	msg := make(map[string]any, len(emailFields))
	for _, f := range emailFields {
		msg[f] = ""
	}
	err := WalkMultipart(body, contentType, func(p *multipart.Part) error {
		name := p.FormName()
		if p.FileName() != "" || !slices.Contains(emailFields, name) {
			return nil
		}
		b, err := io.ReadAll(io.LimitReader(p, maxEmailField))
		if err != nil {
			return err
		}
		msg[name] = strings.ToValidUTF8(string(b), "\uFFFD")
		return nil
	})
	if err != nil {
		return nil, mappingErrorf("an inbound e-mail is a well-formed multipart/form-data post: %v", err)
	}
	if msg["from"] == "" && msg["subject"] == "" && msg["text"] == "" && msg["html"] == "" {
		return nil, mappingErrorf("the inbound e-mail has no from, subject, text or html field")
	}
	return msg, nil
}

// applyTemplate applies the first template whose from and subject match
// and that captures at least one field. Each field's expression is tried
// on the text (or, without one, the html stripped of its tags), then on
// the raw html (for meta tags).
func (m *Mapper) applyTemplate(msg map[string]any) (map[string]any, error) {
	from, _ := msg["from"].(string)
	subject, _ := msg["subject"].(string)
	text, _ := msg["text"].(string)
	rawHTML, _ := msg["html"].(string)
	if strings.TrimSpace(text) == "" && rawHTML != "" {
		text = StripHTML(rawHTML)
	}
	tried := make([]string, 0, len(m.templates))
	for _, t := range m.templates {
		tried = append(tried, t.name)
		if !t.from.MatchString(from) || !t.subject.MatchString(subject) {
			continue
		}
		fields := map[string]any{}
		for _, f := range t.fields {
			if v, ok := capture(f.re, text); ok {
				fields[f.name] = v
			} else if v, ok := capture(f.re, rawHTML); ok {
				fields[f.name] = html.UnescapeString(v)
			}
		}
		if len(fields) > 0 {
			msg["template"] = t.name
			return fields, nil
		}
	}
	return nil, mappingErrorf("no e-mail template fits (tried %s)", strings.Join(tried, ", "))
}

func capture(re *regexp.Regexp, s string) (string, bool) {
	if s == "" {
		return "", false
	}
	sub := re.FindStringSubmatch(s)
	if len(sub) < 2 {
		return "", false
	}
	v := strings.TrimSpace(sub[1])
	return v, v != ""
}

// StripHTML returns the text of an HTML document: block elements and <br>
// end lines, scripts and styles are dropped, entities decoded.
func StripHTML(doc string) string {
	z := html.NewTokenizer(strings.NewReader(doc))
	var b strings.Builder
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidyLines(b.String())
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch a := atom.Lookup(name); a {
			case atom.Script, atom.Style, atom.Head:
				skip++
			case atom.Br, atom.P, atom.Div, atom.Tr, atom.Li, atom.H1, atom.H2, atom.H3, atom.H4, atom.Table:
				b.WriteByte('\n')
			case atom.Td, atom.Th:
				b.WriteByte(' ')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch atom.Lookup(name) {
			case atom.Script, atom.Style, atom.Head:
				if skip > 0 {
					skip--
				}
			case atom.P, atom.Div, atom.Tr, atom.Li, atom.H1, atom.H2, atom.H3, atom.H4, atom.Table:
				b.WriteByte('\n')
			}
		}
	}
}

// tidyLines collapses the spaces of each line and drops empty lines.
func tidyLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// helpers are the functions expressions may call beside expr's builtins
// (https://expr-lang.org/docs/language-definition).
var helpers = []expr.Option{
	// join(a, b, …) joins the non-empty texts with one space (a name from
	// its parts); join(list[, sep]) keeps expr's builtin meaning.
	expr.Function("join", func(args ...any) (any, error) {
		if len(args) == 0 {
			return "", nil
		}
		if rv := reflect.ValueOf(args[0]); args[0] != nil && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) {
			sep := ""
			if len(args) > 1 {
				s, ok := args[1].(string)
				if !ok {
					return nil, errors.New("join: the separator must be text")
				}
				sep = s
			}
			parts := make([]string, 0, rv.Len())
			for i := range rv.Len() {
				s, err := Text(rv.Index(i).Interface())
				if err != nil {
					return nil, fmt.Errorf("join: %w", err)
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, sep), nil
		}
		parts := make([]string, 0, len(args))
		for _, a := range args {
			s, err := Text(a)
			if err != nil {
				return nil, fmt.Errorf("join: %w", err)
			}
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " "), nil
	}),
	// coalesce(a, b, …) is the first argument whose text is not empty.
	expr.Function("coalesce", func(args ...any) (any, error) {
		for _, a := range args {
			if s, err := Text(a); err != nil || s != "" {
				return a, nil
			}
		}
		return nil, nil
	}),
	// text(x) is x as the text a field would get.
	expr.Function("text", func(args ...any) (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("text: want 1 argument, got %d", len(args))
		}
		return Text(args[0])
	}),
	// num(x) is a number (or numeric text) as a float64, for arithmetic
	// and comparisons; nil when it is not a number.
	expr.Function("num", func(args ...any) (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("num: want 1 argument, got %d", len(args))
		}
		s, err := Text(args[0])
		if err != nil || s == "" {
			return nil, nil //nolint:nilerr // not a number is nil, by contract
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, nil //nolint:nilerr // not a number is nil, by contract
		}
		return f, nil
	}),
	// capture(s, re) is the first capture group of re in s, or nil.
	expr.Function("capture", func(args ...any) (any, error) {
		if len(args) != 2 {
			return nil, fmt.Errorf("capture: want 2 arguments, got %d", len(args))
		}
		s, err := Text(args[0])
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		pat, ok := args[1].(string)
		if !ok {
			return nil, errors.New("capture: the pattern must be text")
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		if sub := re.FindStringSubmatch(s); len(sub) > 1 {
			return sub[1], nil
		}
		return nil, nil
	}),
	// reject(reason) rejects the delivery with that reason.
	expr.Function("reject", func(args ...any) (any, error) {
		reason := "rejected by the mapping"
		if len(args) > 0 {
			if s, err := Text(args[0]); err == nil && s != "" {
				reason = s
			}
		}
		return nil, &rejectError{reason: reason}
	}),
}
