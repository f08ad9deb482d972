// Package recordschema checks records against the published JSON Schema in
// configs/record.schema.json, so that every test that produces a record
// also proves the schema the analysts rely on. It is for tests only.
package recordschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	once   sync.Once
	schema *jsonschema.Schema
	err    error
)

// Path is the schema file's location in the repository.
func Path() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "configs", "record.schema.json")
}

func load() {
	c := jsonschema.NewCompiler()
	schema, err = c.Compile(Path())
}

// Validate returns an error when record is not valid JSON or does not
// conform to the schema.
func Validate(record []byte) error {
	once.Do(load)
	if err != nil {
		return fmt.Errorf("compiling record schema: %w", err)
	}
	v, uerr := jsonschema.UnmarshalJSON(bytes.NewReader(record))
	if uerr != nil {
		return fmt.Errorf("record is not JSON: %w", uerr)
	}
	if verr := schema.Validate(v); verr != nil {
		return fmt.Errorf("record does not match %s: %w\n%s", filepath.Base(Path()), verr, record)
	}
	return nil
}

// NoDuplicateKeys returns an error when any JSON object in b repeats a key,
// which encoding/json and the schema validator both accept silently.
func NoDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("key %q repeated in %s", key, b)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return walk()
}
