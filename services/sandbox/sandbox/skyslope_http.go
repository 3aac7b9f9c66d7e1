package sandbox

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	skyslopeForms    = "/partner/api"
	skyslopeSales    = "/api/files/sales"
	skyslopePageSize = 10
)

func (s *SkySlope) routes() {
	s.oauth.mount(s.Kit, "/oauth2/authorize", "/oauth2/token", s.ExpireSessions)
	s.HandleFunc("POST "+skyslopeForms+"/files", s.postFile)
	s.HandleFunc("GET "+skyslopeForms+"/files", s.listFiles)
	s.HandleFunc("POST /auth/login", s.login)
	s.HandleFunc("GET "+skyslopeSales, s.listSales)
	s.HandleFunc("GET "+skyslopeSales+"/{guid}", s.getSale)
	s.HandleKnob("POST /sales/{guid}/close", s.postClose)
}

// auth: the OAuth endpoints and the login authenticate the caller themselves; the Forms API
// wants a valid access token, the Files API a valid session.
func (s *SkySlope) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/oauth2/"), r.URL.Path == "/auth/login":
		return "login", true
	case strings.HasPrefix(r.URL.Path, skyslopeForms+"/"):
		tok := BearerToken(r)
		if _, _, ok := s.oauth.valid(tok); !ok {
			s.Unauthorized(w, `Bearer error="invalid_token"`, "Unauthorized: send a valid, unexpired access token as Authorization: Bearer <token>")
			return "", false
		}
		return tok, true
	default:
		sess := r.Header.Get("Session")
		s.mu.Lock()
		exp, ok := s.sessions[sess]
		now := s.now()
		s.mu.Unlock()
		if sess == "" || !ok || !now.Before(exp) {
			s.Unauthorized(w, "", "Unauthorized: send a valid, unexpired session from POST /auth/login as the Session header")
			return "", false
		}
		return sess, true
	}
}

func (s *SkySlope) badRequest(w http.ResponseWriter, message string, errs ...string) {
	writeJSON(w, http.StatusBadRequest, skyslopeError{Code: "400", Message: message, Errors: append([]string{}, errs...), TraceID: randomToken("trace_")})
}

// skyslopeNewFile is the body of POST /files.
type skyslopeNewFile struct {
	Name               string            `json:"name"`
	RepresentationType string            `json:"representationType"`
	Property           *SkySlopeProperty `json:"property"`
}

func (s *SkySlope) postFile(w http.ResponseWriter, r *http.Request) {
	var in skyslopeNewFile
	if err := decodeJSON(r, &in); err != nil {
		s.badRequest(w, err.Error())
		return
	}
	var errs []string
	if strings.TrimSpace(in.Name) == "" {
		errs = append(errs, "name is required")
	}
	if !slices.Contains(SkySlopeRepresentationTypes, in.RepresentationType) {
		errs = append(errs, fmt.Sprintf("representationType %q is not one of %v", in.RepresentationType, SkySlopeRepresentationTypes))
	}
	if p := in.Property; p == nil {
		errs = append(errs, "property is required")
	} else {
		for _, f := range []struct{ name, v string }{
			{"streetNumber", p.StreetNumber}, {"streetName", p.StreetName}, {"city", p.City}, {"postalCode", p.PostalCode},
		} {
			if strings.TrimSpace(f.v) == "" {
				errs = append(errs, "property."+f.name+" is required")
			}
		}
		if len(p.State) != 2 {
			errs = append(errs, "property.state must be 2 characters")
		}
	}
	if len(errs) > 0 {
		s.badRequest(w, "The request is invalid.", errs...)
		return
	}
	f := s.createFile(in.Name, in.RepresentationType, *in.Property)
	writeJSON(w, http.StatusOK, map[string]int64{"fileId": f.FileID})
}

// pageParams reads a positive integer query parameter, def when absent.
func pageParam(r *http.Request, name string, def, maxV int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxV {
		return 0, fmt.Errorf("%s must be 1 to %d", name, maxV)
	}
	return n, nil
}

func (s *SkySlope) listFiles(w http.ResponseWriter, r *http.Request) {
	page, err := pageParam(r, "page", 1, 1<<30)
	if err != nil {
		s.badRequest(w, err.Error())
		return
	}
	size, err := pageParam(r, "pageSize", 25, 500)
	if err != nil {
		s.badRequest(w, err.Error())
		return
	}
	files := s.Files()
	slices.Reverse(files)
	from := min((page-1)*size, len(files))
	to := min(from+size, len(files))
	writeJSON(w, http.StatusOK, struct {
		TotalRecords int            `json:"totalRecords"`
		Files        []SkySlopeFile `json:"files"`
	}{len(files), nonNil(files[from:to])})
}

// login is POST /auth/login: the HMAC of the client's id and secret and the timestamp, keyed by
// the user's access secret, in "Authorization: SS <accessKey>:<hmac>".
func (s *SkySlope) login(w http.ResponseWriter, r *http.Request) {
	refuse := func(msg string) { s.Unauthorized(w, "", "Unauthorized: "+msg) }
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	key, mac, ok := strings.Cut(cred, ":")
	if !strings.EqualFold(scheme, "SS") || !ok {
		refuse("send Authorization: SS <accessKey>:<hmac>")
		return
	}
	ts := r.Header.Get("Timestamp")
	at, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		refuse("send the Timestamp header as a UTC ISO 8601 time, e.g. 2020-01-02T03:00:00Z")
		return
	}
	if d := s.now().Sub(at); d > s.opts.Skew || d < -s.opts.Skew {
		refuse("the Timestamp is too far from the server's time")
		return
	}
	var in struct {
		ClientID     string `json:"ClientId"`
		ClientSecret string `json:"ClientSecret"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.badRequest(w, err.Error())
		return
	}
	if key != s.opts.AccessKey || in.ClientID != s.opts.FilesClientID || in.ClientSecret != s.opts.FilesClientSecret {
		refuse("unknown access key or client")
		return
	}
	want := SignSkySlopeLogin(s.opts.AccessSecret, in.ClientID, in.ClientSecret, ts)
	if subtle.ConstantTimeCompare([]byte(mac), []byte(want)) != 1 {
		refuse("the HMAC does not match")
		return
	}
	sess := randomToken("sss_")
	exp := s.now().Add(s.opts.SessionTTL).UTC()
	s.mu.Lock()
	s.sessions[sess] = exp
	s.logins++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"Session": sess, "Expiration": exp.Format(time.RFC3339)})
}

func (s *SkySlope) listSales(w http.ResponseWriter, r *http.Request) {
	page, err := pageParam(r, "pageNumber", 1, 1000)
	if err != nil {
		s.badRequest(w, err.Error())
		return
	}
	var since time.Time
	if v := r.URL.Query().Get("earliestDate"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.badRequest(w, "earliestDate must be Unix seconds")
			return
		}
		since = time.Unix(n, 0)
	}
	var all []SkySlopeSale
	for _, x := range s.Sales() {
		if !x.ModifiedOn.Before(since) {
			all = append(all, x.SkySlopeSale)
		}
	}
	slices.SortStableFunc(all, func(a, b SkySlopeSale) int { return a.ModifiedOn.Compare(b.ModifiedOn) })
	from := min((page-1)*skyslopePageSize, len(all))
	to := min(from+skyslopePageSize, len(all))
	writeJSON(w, http.StatusOK, struct {
		Value    []SkySlopeSale `json:"value"`
		Warnings []string       `json:"warnings"`
		Links    []string       `json:"links"`
	}{nonNil(all[from:to]), []string{}, []string{}})
}

func (s *SkySlope) getSale(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	for _, x := range s.Sales() {
		if x.SaleGUID == guid {
			writeJSON(w, http.StatusOK, map[string]any{"value": map[string]any{"sale": x.SkySlopeSale}})
			return
		}
	}
	s.WriteError(w, http.StatusNotFound, "sale not found")
}

// postClose is the page's button and its API: close a sale with price, commission (whole
// dollars, both optional) and close_date. It answers 204 to a JSON caller and returns a browser
// to the page.
func (s *SkySlope) postClose(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	num := func(name string) (int64, error) {
		v := strings.TrimSpace(r.PostFormValue(name))
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s must be whole dollars", name)
		}
		return n, nil
	}
	price, err1 := num("price")
	commission, err2 := num("commission")
	if err := errors.Join(err1, err2); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	date := strings.TrimSpace(r.PostFormValue("close_date"))
	if _, err := time.Parse("2006-01-02", date); date != "" && err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{"close_date must be YYYY-MM-DD"})
		return
	}
	if err := s.CloseSale(r.PathValue("guid"), SkySlopeClosing{Price: price, Commission: commission, CloseDate: date}); err != nil {
		writeJSON(w, http.StatusNotFound, knobError{err.Error()})
		return
	}
	knobDone(w, r)
}

// tables show the Forms files and the sales, newest first, with the sales' buttons.
func (s *SkySlope) tables() []PageTable {
	files := PageTable{Title: "Forms files", Columns: []string{"fileId", "name", "representation", "property", "created"}}
	sales := PageTable{Title: "Sales (Files API)", Columns: []string{"saleGuid", "fileId", "status", "sale price", "commission entered", "closing date", "modified"}, ActionsColumn: "close"}
	for _, f := range slices.Backward(s.Files()) {
		p := f.Property
		files.Rows = append(files.Rows, []string{
			strconv.FormatInt(f.FileID, 10), f.Name, f.RepresentationType,
			strings.TrimSpace(p.StreetNumber + " " + p.StreetName + ", " + p.City + " " + p.State), f.CreatedDate.Format(time.RFC3339),
		})
	}
	for _, x := range slices.Backward(s.Sales()) {
		price, comm := "", ""
		if x.SalePrice > 0 {
			price = dollars(int64(x.SalePrice))
		}
		if x.Commission > 0 {
			comm = dollars(x.Commission)
		}
		sales.Rows = append(sales.Rows, []string{
			x.SaleGUID, strconv.FormatInt(x.FileID, 10), x.Status, price, comm, x.ActualClosingDate, x.ModifiedOn.Format(time.RFC3339),
		})
		act := "/_sandbox/skyslope/sales/" + x.SaleGUID + "/close"
		sales.RowActions = append(sales.RowActions, []PageAction{
			{Action: act, Fields: map[string]string{"price": "525000", "commission": "15750"}, Label: "Close ($525,000, $15,750 commission)"},
			{Action: act, Fields: map[string]string{}, Label: "Close, no price"},
		})
	}
	return []PageTable{files, sales}
}
