package codec

import (
	"qstream/internal/testvectors"

	"bufio"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// parserSharedTestdata returns the path of a file in the third-party test
// data beside the checkout (/work/shared/testdata, see its SOURCES.md), and
// fails the test with a clear message if it is absent. It is never copied
// into the repository.
func parserSharedTestdata(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(testvectors.Dir(), rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("third-party test data %s is missing (%v): it lives in ../shared/testdata beside the repository checkout, see shared/testdata/SOURCES.md", p, err)
	}
	return p
}

// parserWantErr checks that err is a *Error with the given reason and field.
func parserWantErr(t testing.TB, err error, reason Reason, field string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s (field %q)", reason, field)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *codec.Error", err, err)
	}
	if ce.Reason != reason || ce.Field != field {
		t.Fatalf("got %s field %q (%v), want %s field %q", ce.Reason, ce.Field, err, reason, field)
	}
	return ce
}

// parserEachLine calls fn with every line of the file at path (without the
// newline); the slice is only valid during the call.
func parserEachLine(t *testing.T, path string, fn func([]byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
