// Package config loads a daemon's configuration from one declaration: a Go
// struct whose fields carry `toml:"key"` and `help:"…"` tags. The same struct
// gives the TOML file keys, the command-line flags (-section.key), the
// environment variables (PREFIX_SECTION_KEY) and the --help text, so they
// cannot drift apart. Precedence: flags, then environment, then the file,
// then the defaults the caller put in the struct.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Key is one configuration leaf.
type Key struct {
	Path    string // dotted TOML path, e.g. "node.rpc-url"
	Env     string // environment variable
	Help    string
	Default string
	// FileOnly keys (lists of tables, e.g. [[upstreams]]) have no usable
	// flag or environment variable; help and docs say so.
	FileOnly bool
	field    reflect.Value
}

// Error names the key at fault and what to do. Every package that checks
// configuration returns it, so an operator always sees the key.
type Error struct {
	Key    string
	Source string // where the value came from ("flag -x", "environment X", "file f"); empty for checks
	Err    error
	Fix    string // what to do instead; may be empty
}

// Invalid reports a value of key that fails a check, and the fix.
func Invalid(key, problem, fix string) *Error {
	return &Error{Key: key, Err: errors.New(problem), Fix: fix}
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("config key %q", e.Key)
	if e.Source != "" {
		msg += " (" + e.Source + ")"
	}
	msg += fmt.Sprintf(": %v", e.Err)
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Keys lists the configuration keys of cfg (a pointer to a struct), sorted
// by path.
func Keys(cfg any, envPrefix string) []Key {
	var keys []Key
	walk(reflect.ValueOf(cfg).Elem(), "", func(path, help string, v reflect.Value) {
		keys = append(keys, Key{
			Path:     path,
			Env:      envName(envPrefix, path),
			Help:     help,
			Default:  formatValue(v),
			FileOnly: fileOnly(v),
			field:    v,
		})
	})
	sort.Slice(keys, func(i, j int) bool { return keys[i].Path < keys[j].Path })
	return keys
}

func walk(v reflect.Value, prefix string, fn func(path, help string, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("toml"), ",")[0]
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			walk(fv, path, fn)
			continue
		}
		fn(path, f.Tag.Get("help"), fv)
	}
}

// fileOnly: only []string has a flag/environment form (comma-separated).
func fileOnly(v reflect.Value) bool {
	return v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.String
}

func envName(prefix, path string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return strings.ToUpper(prefix + "_" + r.Replace(path))
}

// Load fills cfg (a pointer to a struct holding the defaults) from the file
// named by the -config flag (or fileDefault when it exists), the environment
// and args. It returns flag.ErrHelp after printing usage for -h/-help.
func Load(cfg any, name, envPrefix, fileDefault string, args []string, usage io.Writer) error {
	keys := Keys(cfg, envPrefix)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usage)
	configPath := fs.String("config", fileDefault, "path of the TOML configuration file (env "+strings.ToUpper(envPrefix)+"_CONFIG)")
	set := map[string]string{}
	for _, k := range keys {
		k := k
		usage := fmt.Sprintf("%s (env %s, default %q)", k.Help, k.Env, k.Default)
		if k.FileOnly {
			// Still a flag, so that using it gets the "use the file" error
			// instead of "flag provided but not defined".
			usage = k.Help + " (file only: no flag or environment variable)"
		}
		fs.Func(k.Path, usage, func(s string) error {
			set[k.Path] = s
			return nil
		})
	}
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: %s [flags]\n\nEvery flag is also a key of the TOML file (-section.key is key under [section])\nand an environment variable. Flags win over the environment, which wins over the file.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with -, see -help)", fs.Arg(0))
	}
	path := *configPath
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	if env := os.Getenv(strings.ToUpper(envPrefix) + "_CONFIG"); env != "" && !explicit {
		path, explicit = env, true
	}
	if path != "" {
		if _, err := os.Stat(path); err == nil || explicit {
			md, err := toml.DecodeFile(path, cfg)
			if err != nil {
				var perr toml.ParseError
				if errors.As(err, &perr) {
					return fmt.Errorf("config file %s: %s", path, perr.ErrorWithPosition())
				}
				if ce := typeError(err, path); ce != nil {
					return ce
				}
				return fmt.Errorf("config file %s: %w", path, err)
			}
			if und := md.Undecoded(); len(und) > 0 {
				return &Error{Key: und[0].String(), Source: "file " + path, Err: errors.New("unknown key: check the spelling against -help or docs/")}
			}
			// The decoder takes a bare number for a duration as nanoseconds:
			// return-after = 120 would silently be 120ns.
			for _, k := range keys {
				if _, ok := k.field.Interface().(time.Duration); !ok {
					continue
				}
				if t := md.Type(strings.Split(k.Path, ".")...); t == "Integer" || t == "Float" {
					return &Error{Key: k.Path, Source: "file " + path, Err: errors.New("a bare number is not a duration"),
						Fix: `write it in quotes with its unit, e.g. "10s", "500ms", "2m"`}
				}
			}
		}
	}
	for _, k := range keys {
		if s, ok := os.LookupEnv(k.Env); ok {
			if err := setValue(k.field, s); err != nil {
				return &Error{Key: k.Path, Source: "environment " + k.Env, Err: err}
			}
		}
	}
	for _, k := range keys {
		if s, ok := set[k.Path]; ok {
			if err := setValue(k.field, s); err != nil {
				return &Error{Key: k.Path, Source: "flag -" + k.Path, Err: err}
			}
		}
	}
	return nil
}

// tomlTypeErr matches the toml decoder's type mismatch, which it reports
// as plain text: `toml: line 2 (last key "server.max-clients"): incompatible
// types: TOML value has type string; destination has type integer`.
var tomlTypeErr = regexp.MustCompile(`^toml: (?:line \d+ )?\(last key "([^"]+)"\): (incompatible types: TOML value has type (\S+); destination has type (\S+))$`)

// typeError turns the decoder's type mismatch into an Error naming the key,
// with the fix: the commonest ones are a quoted number and a [table] written
// for a list of [[tables]].
func typeError(err error, path string) *Error {
	m := tomlTypeErr.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	key, have, want := m[1], m[3], m[4]
	fix := "write the value as -help and docs/ show it (numbers and true/false without quotes, durations and text in quotes)"
	if want == "slice" && strings.HasPrefix(have, "map") {
		fix = fmt.Sprintf("write each entry as a [[%s]] table (two brackets)", key)
	}
	return &Error{Key: key, Source: "file " + path, Err: errors.New(m[2]), Fix: fix}
}

func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (write e.g. 10s, 500ms, 2m)", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number that fits", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative whole number that fits", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot be set from a flag or the environment; use the file")
		}
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v.Interface())
}

// Markdown renders the keys as a reference table for docs/.
func Markdown(cfg any, envPrefix string) string {
	var b strings.Builder
	b.WriteString("| key (TOML) | flag | environment | default | meaning |\n|---|---|---|---|---|\n")
	// Help texts say <datadir>: escaped, or a Markdown renderer drops it
	// as an HTML tag.
	esc := strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", "\\|")
	for _, k := range Keys(cfg, envPrefix) {
		flagCol, envCol, def := "`-"+k.Path+"`", "`"+k.Env+"`", "`"+k.Default+"`"
		switch {
		case k.FileOnly:
			flagCol, envCol, def = "(file only)", "(file only)", "(none)"
		case k.Default == "":
			def = "(empty)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Path, flagCol, envCol, def, esc.Replace(k.Help))
	}
	return b.String()
}
