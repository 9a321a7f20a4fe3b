package config

// A static scan of the program's Go sources for the configuration keys it reads (used by
// doc_test.go). It works on syntax only (go/parser + go/ast, no type checking, so it stays fast
// and needs no compiled dependencies):
//
//   - reads: calls <v>.Get*/IsSet/SetDefault(key) whose receiver is a *viper.Viper: an identifier
//     declared as a *viper.Viper parameter or variable, or assigned from config.New()/viper.New();
//   - flags: config.BindFlags(v, cmd, prefix, keys) binds every flag defined on cmd (directly, via
//     f := cmd.Flags(), or in a helper function or closure given cmd or cmd.Flags()) to
//     prefix.flag_name, or to the key the keys map gives the flag.
//
// Key expressions are resolved when they are string literals, constants (also package-level
// constants of other packages of the module, e.g. torch.KeyLibrary), concatenations of those, or
// parameters of a function or closure, whose call sites are then resolved in turn. Anything else
// is reported as unresolved, so a key cannot slip past the documentation check unnoticed.

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// valKind is the type the program reads a key with.
type valKind string

const (
	kindAny         valKind = "any"
	kindString      valKind = "string"
	kindInt         valKind = "int"
	kindFloat       valKind = "float"
	kindBool        valKind = "bool"
	kindDuration    valKind = "duration"
	kindStringSlice valKind = "string list"
	kindIntSlice    valKind = "int list"
	kindFloatSlice  valKind = "float list"
)

// getterKinds maps the viper methods taking a key to the type they read.
var getterKinds = map[string]valKind{
	"Get": kindAny, "IsSet": kindAny, "InConfig": kindAny,
	"GetString": kindString,
	"GetBool":   kindBool,
	"GetInt":    kindInt, "GetInt32": kindInt, "GetInt64": kindInt, "GetUint": kindInt, "GetUint8": kindInt,
	"GetUint16": kindInt, "GetUint32": kindInt, "GetUint64": kindInt, "GetSizeInBytes": kindAny,
	"GetFloat64": kindFloat, "GetDuration": kindDuration, "GetTime": kindAny,
	"GetStringSlice": kindStringSlice, "GetIntSlice": kindIntSlice,
	"GetStringMap": kindAny, "GetStringMapString": kindAny, "GetStringMapStringSlice": kindAny,
	"SetDefault": kindAny,
}

// flagKinds maps pflag definition methods (without P/Var suffixes) to the type of their value.
var flagKinds = map[string]valKind{
	"String": kindString, "Bool": kindBool, "Int": kindInt, "Int8": kindInt, "Int16": kindInt, "Int32": kindInt,
	"Int64": kindInt, "Uint": kindInt, "Uint8": kindInt, "Uint16": kindInt, "Uint32": kindInt, "Uint64": kindInt,
	"Float32": kindFloat, "Float64": kindFloat, "Duration": kindDuration, "StringSlice": kindStringSlice,
	"StringArray": kindStringSlice, "IntSlice": kindIntSlice, "Int64Slice": kindIntSlice, "UintSlice": kindIntSlice,
	"Float64Slice": kindFloatSlice, "Float32Slice": kindFloatSlice,
}

// keyUse is one place a key is read or bound.
type keyUse struct {
	Key  string
	Kind valKind
	Pos  string // file:line, relative to the repository root
	How  string // "GetInt", "SetDefault", "flag --batch", ...
	// Default is the value the code gives the key (flag default or SetDefault value) when it is
	// statically known: a constant.Value, a []constant.Value or nil for an empty list.
	Default    any
	HasDefault bool
}

// scanIssue is a key expression or flag the scan cannot resolve.
type scanIssue struct {
	Pos, What string
}

type srcFile struct {
	path    string // relative to the repository root
	ast     *ast.File
	imports map[string]string // local name -> import path
	pkg     *srcPkg
}

type srcPkg struct {
	importPath string
	name       string
	files      []*srcFile
	consts     map[string]*ast.ValueSpec // package-level constants by name
	vars       map[string]*ast.ValueSpec // package-level variables by name
	funcs      map[string]*ast.FuncDecl  // package-level functions (not methods) by name
}

type keyScanner struct {
	root, module string
	fset         *token.FileSet
	pkgs         map[string]*srcPkg // by import path
	// parents maps each node to its parent, per file, for the nodes the scanner asks about.
	parents  map[ast.Node]ast.Node
	nodeFile map[ast.Node]*srcFile

	uses   []keyUse
	issues []scanIssue
}

// scanKeys parses the non-test Go files under root/<dirs> and collects the keys they read and bind.
func scanKeys(root, module string, dirs ...string) (*keyScanner, error) {
	s := &keyScanner{root: root, module: module, fset: token.NewFileSet(), pkgs: map[string]*srcPkg{},
		parents: map[ast.Node]ast.Node{}, nodeFile: map[ast.Node]*srcFile{}}
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := e.Name()
			if e.IsDir() {
				if path != filepath.Join(root, d) && (name == "testdata" || name == "vendor" ||
					strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				return nil
			}
			return s.parse(path)
		})
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	for _, p := range s.pkgs {
		for _, f := range p.files {
			f.imports = map[string]string{}
			for _, im := range f.ast.Imports {
				ip, _ := strconv.Unquote(im.Path.Value)
				local := ip[strings.LastIndex(ip, "/")+1:]
				if q, ok := s.pkgs[ip]; ok {
					local = q.name
				}
				if im.Name != nil {
					local = im.Name.Name
				}
				f.imports[local] = ip
			}
		}
	}
	paths := make([]string, 0, len(s.pkgs))
	for ip := range s.pkgs {
		paths = append(paths, ip)
	}
	sort.Strings(paths)
	for _, ip := range paths {
		for _, f := range s.pkgs[ip].files {
			s.scanFile(f)
		}
	}
	return s, nil
}

func (s *keyScanner) parse(path string) error {
	f, err := parser.ParseFile(s.fset, path, nil, 0)
	if err != nil {
		return fmt.Errorf("keyscan: %w", err)
	}
	rel, _ := filepath.Rel(s.root, path)
	ip := s.module + "/" + filepath.ToSlash(filepath.Dir(rel))
	p := s.pkgs[ip]
	if p == nil {
		p = &srcPkg{importPath: ip, name: f.Name.Name, consts: map[string]*ast.ValueSpec{},
			vars: map[string]*ast.ValueSpec{}, funcs: map[string]*ast.FuncDecl{}}
		s.pkgs[ip] = p
	}
	sf := &srcFile{path: filepath.ToSlash(rel), ast: f, pkg: p}
	p.files = append(p.files, sf)
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				p.funcs[d.Name.Name] = d
			}
		case *ast.GenDecl:
			for _, sp := range d.Specs {
				vs, ok := sp.(*ast.ValueSpec)
				if !ok {
					continue
				}
				for _, n := range vs.Names {
					if d.Tok == token.CONST {
						p.consts[n.Name] = vs
					} else if d.Tok == token.VAR {
						p.vars[n.Name] = vs
					}
				}
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			return false
		}
		s.nodeFile[n] = sf
		ast.Inspect(n, func(c ast.Node) bool {
			if c == n {
				return true
			}
			if c != nil {
				s.parents[c] = n
			}
			return false
		})
		return true
	})
	return nil
}

func (s *keyScanner) pos(n ast.Node) string {
	p := s.fset.Position(n.Pos())
	rel, err := filepath.Rel(s.root, p.Filename)
	if err != nil {
		rel = p.Filename
	}
	return fmt.Sprintf("%s:%d", filepath.ToSlash(rel), p.Line)
}

func (s *keyScanner) issue(n ast.Node, format string, args ...any) {
	s.issues = append(s.issues, scanIssue{Pos: s.pos(n), What: fmt.Sprintf(format, args...)})
}

// scanFile records the viper reads and the BindFlags calls of one file.
func (s *keyScanner) scanFile(f *srcFile) {
	ast.Inspect(f.ast, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if kind, ok := getterKinds[sel.Sel.Name]; ok && len(call.Args) >= 1 && s.isViper(f, sel.X) {
			keys, err := s.evalStrings(f, call.Args[0], nil, 0)
			if err != nil {
				s.issue(call, "key of %s: %v", sel.Sel.Name, err)
				return true
			}
			for _, k := range keys {
				u := keyUse{Key: strings.ToLower(k), Kind: kind, Pos: s.pos(call), How: sel.Sel.Name}
				if sel.Sel.Name == "SetDefault" && len(call.Args) == 2 {
					u.Default, u.HasDefault = s.evalDefault(f, call.Args[1], nil)
					u.Kind = kindOfDefault(u.Default, u.HasDefault)
				}
				s.uses = append(s.uses, u)
			}
			return true
		}
		if sel.Sel.Name == "BindFlags" && len(call.Args) == 4 && f.imports[identName(sel.X)] == s.module+"/internal/config" {
			s.bindFlags(f, call)
		}
		return true
	})
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// isViper reports whether e is an identifier of type *viper.Viper.
func (s *keyScanner) isViper(f *srcFile, e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	if !ok {
		return false
	}
	if id.Obj == nil { // package-level variable of another file
		vs := f.pkg.vars[id.Name]
		if vs == nil {
			return false
		}
		return s.viperSpec(s.fileOf(vs), vs, id.Name)
	}
	switch d := id.Obj.Decl.(type) {
	case *ast.Field:
		return s.isViperType(f, d.Type)
	case *ast.ValueSpec:
		return s.viperSpec(f, d, id.Name)
	case *ast.AssignStmt:
		for i, l := range d.Lhs {
			if identName(l) == id.Name && len(d.Rhs) == len(d.Lhs) {
				return s.isViperNew(f, d.Rhs[i])
			}
		}
	}
	return false
}

func (s *keyScanner) fileOf(n ast.Node) *srcFile { return s.nodeFile[n] }

func (s *keyScanner) viperSpec(f *srcFile, vs *ast.ValueSpec, name string) bool {
	if f == nil {
		return false
	}
	if vs.Type != nil {
		return s.isViperType(f, vs.Type)
	}
	for i, n := range vs.Names {
		if n.Name == name && i < len(vs.Values) {
			return s.isViperNew(f, vs.Values[i])
		}
	}
	return false
}

func (s *keyScanner) isViperType(f *srcFile, t ast.Expr) bool {
	st, ok := t.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := st.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Viper" && f.imports[identName(sel.X)] == "github.com/spf13/viper"
}

// isViperNew reports whether e is viper.New() or config.New().
func (s *keyScanner) isViperNew(f *srcFile, e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	switch fn := call.Fun.(type) {
	case *ast.SelectorExpr:
		ip := f.imports[identName(fn.X)]
		return fn.Sel.Name == "New" && (ip == "github.com/spf13/viper" || ip == s.module+"/internal/config")
	case *ast.Ident:
		return fn.Name == "New" && f.pkg.importPath == s.module+"/internal/config"
	}
	return false
}

// binding maps parameters to the argument expressions of one call site.
type binding struct {
	obj  *ast.Object
	arg  ast.Expr
	file *srcFile
	env  []binding
}

func lookup(env []binding, obj *ast.Object) (binding, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if env[i].obj == obj {
			return env[i], true
		}
	}
	return binding{}, false
}

const maxDepth = 8

// evalStrings resolves a string expression to the values it can take.
func (s *keyScanner) evalStrings(f *srcFile, e ast.Expr, env []binding, depth int) ([]string, error) {
	vals, err := s.evalConst(f, e, env, depth)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if v.Kind() != constant.String {
			return nil, fmt.Errorf("%s is not a string", v)
		}
		out = append(out, constant.StringVal(v))
	}
	return out, nil
}

// evalConst resolves e to the constant values it can take (one for a constant, one per call site
// for a parameter).
func (s *keyScanner) evalConst(f *srcFile, e ast.Expr, env []binding, depth int) ([]constant.Value, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("too deep")
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
		if v.Kind() == constant.Unknown {
			return nil, fmt.Errorf("bad literal %s", e.Value)
		}
		return []constant.Value{v}, nil
	case *ast.ParenExpr:
		return s.evalConst(f, e.X, env, depth)
	case *ast.UnaryExpr:
		xs, err := s.evalConst(f, e.X, env, depth)
		if err != nil {
			return nil, err
		}
		for i := range xs {
			if xs[i] = unaryOp(e.Op, xs[i]); xs[i].Kind() == constant.Unknown {
				return nil, fmt.Errorf("cannot compute %s%s", e.Op, exprString(e.X))
			}
		}
		return xs, nil
	case *ast.BinaryExpr:
		xs, err := s.evalConst(f, e.X, env, depth)
		if err != nil {
			return nil, err
		}
		ys, err := s.evalConst(f, e.Y, env, depth)
		if err != nil {
			return nil, err
		}
		var out []constant.Value
		for _, x := range xs {
			for _, y := range ys {
				r := binaryOp(x, e.Op, y)
				if r.Kind() == constant.Unknown {
					return nil, fmt.Errorf("cannot compute %s %s %s", x, e.Op, y)
				}
				out = append(out, r)
			}
		}
		return out, nil
	case *ast.SelectorExpr:
		if ff, fe, ok := s.fieldOfDefaults(f, e); ok {
			return s.evalConst(ff, fe, nil, depth+1)
		}
		ip, ok := f.imports[identName(e.X)]
		if !ok {
			return nil, fmt.Errorf("%s is not a constant", exprString(e))
		}
		if ip == "time" {
			if d, ok := timeUnits[e.Sel.Name]; ok {
				return []constant.Value{constant.MakeInt64(d)}, nil
			}
		}
		p := s.pkgs[ip]
		if p == nil || p.consts[e.Sel.Name] == nil {
			return nil, fmt.Errorf("%s is not a constant of this module", exprString(e))
		}
		return s.evalSpec(p.consts[e.Sel.Name], e.Sel.Name, depth)
	case *ast.Ident:
		if e.Obj == nil {
			if vs := f.pkg.consts[e.Name]; vs != nil {
				return s.evalSpec(vs, e.Name, depth)
			}
			switch e.Name {
			case "true":
				return []constant.Value{constant.MakeBool(true)}, nil
			case "false":
				return []constant.Value{constant.MakeBool(false)}, nil
			}
			return nil, fmt.Errorf("%s is not a constant", e.Name)
		}
		if b, ok := lookup(env, e.Obj); ok {
			return s.evalConst(b.file, b.arg, b.env, depth+1)
		}
		switch d := e.Obj.Decl.(type) {
		case *ast.ValueSpec:
			if e.Obj.Kind == ast.Con {
				return s.evalSpec(d, e.Name, depth)
			}
		case *ast.Field:
			return s.evalParam(f, e, d, depth)
		}
		return nil, fmt.Errorf("%s is a variable, not a constant or parameter", e.Name)
	}
	return nil, fmt.Errorf("cannot resolve %s", exprString(e))
}

var timeUnits = map[string]int64{"Nanosecond": 1, "Microsecond": 1e3, "Millisecond": 1e6, "Second": 1e9,
	"Minute": 60e9, "Hour": 3600e9}

func (s *keyScanner) evalSpec(vs *ast.ValueSpec, name string, depth int) ([]constant.Value, error) {
	f := s.fileOf(vs)
	for i, n := range vs.Names {
		if n.Name == name {
			if i >= len(vs.Values) {
				return nil, fmt.Errorf("constant %s has no explicit value", name)
			}
			return s.evalConst(f, vs.Values[i], nil, depth+1)
		}
	}
	return nil, fmt.Errorf("constant %s not found", name)
}

// callSites finds the function (declaration or closure assigned to a variable) whose parameter
// list holds field, and all its calls in the package, giving each call's argument for the param.
func (s *keyScanner) callSites(f *srcFile, id *ast.Ident, field *ast.Field) (args []binding, err error) {
	ft, ok := s.parents[field].(*ast.FieldList)
	if !ok {
		return nil, fmt.Errorf("%s: not a parameter", id.Name)
	}
	funcType, ok := s.parents[ft].(*ast.FuncType)
	if !ok || funcType.Params != ft {
		return nil, fmt.Errorf("%s: not a parameter", id.Name)
	}
	index := 0
	found := false
	for _, fl := range ft.List {
		for _, n := range fl.Names {
			if n.Name == id.Name && fl == field {
				found = true
				break
			}
			index++
		}
		if found {
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: parameter not found", id.Name)
	}
	// The callee: a FuncDecl by name (called in its package, or qualified, pkg.Name, from any other
	// package when exported), or a closure `name := func(...)` (called in its package).
	var match func(pf *srcFile, call *ast.CallExpr) bool
	files := f.pkg.files
	switch fn := s.parents[funcType].(type) {
	case *ast.FuncDecl:
		if fn.Recv != nil {
			return nil, fmt.Errorf("%s: parameter of method %s", id.Name, fn.Name.Name)
		}
		name := fn.Name.Name
		match = func(pf *srcFile, call *ast.CallExpr) bool {
			switch ci := call.Fun.(type) {
			case *ast.Ident:
				return pf.pkg == f.pkg && ci.Name == name && (ci.Obj == nil || ci.Obj.Decl == fn)
			case *ast.SelectorExpr:
				x, ok := ci.X.(*ast.Ident)
				return ok && x.Obj == nil && ci.Sel.Name == name && ast.IsExported(name) && pf.imports[x.Name] == f.pkg.importPath
			}
			return false
		}
		files = nil
		for _, ip := range slices.Sorted(maps.Keys(s.pkgs)) {
			files = append(files, s.pkgs[ip].files...)
		}
	case *ast.FuncLit:
		as, ok := s.parents[fn].(*ast.AssignStmt)
		if !ok || len(as.Lhs) != len(as.Rhs) {
			return nil, fmt.Errorf("%s: parameter of a closure not assigned to a variable", id.Name)
		}
		var obj *ast.Object
		for i, r := range as.Rhs {
			if r == fn {
				if li, ok := as.Lhs[i].(*ast.Ident); ok {
					obj = li.Obj
				}
			}
		}
		if obj == nil {
			return nil, fmt.Errorf("%s: parameter of an unnamed closure", id.Name)
		}
		match = func(_ *srcFile, call *ast.CallExpr) bool {
			ci, ok := call.Fun.(*ast.Ident)
			return ok && ci.Obj == obj
		}
	default:
		return nil, fmt.Errorf("%s: parameter of an unnamed function", id.Name)
	}
	for _, pf := range files {
		ast.Inspect(pf.ast, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if ok && match(pf, call) && index < len(call.Args) {
				args = append(args, binding{obj: id.Obj, arg: call.Args[index], file: pf})
			}
			return true
		})
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: no call passes this parameter", id.Name)
	}
	return args, nil
}

func (s *keyScanner) evalParam(f *srcFile, id *ast.Ident, field *ast.Field, depth int) ([]constant.Value, error) {
	sites, err := s.callSites(f, id, field)
	if err != nil {
		return nil, err
	}
	var out []constant.Value
	for _, b := range sites {
		vs, err := s.evalConst(b.file, b.arg, nil, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s (argument at %s): %w", id.Name, s.pos(b.arg), err)
		}
		out = append(out, vs...)
	}
	return out, nil
}

// evalDefault resolves a default value: a constant, nil (an empty list) or a slice literal of
// constants. ok is false when the value is not statically known.
func (s *keyScanner) evalDefault(f *srcFile, e ast.Expr, env []binding) (any, bool) {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" && id.Obj == nil {
		return nil, true
	}
	if id, ok := e.(*ast.Ident); ok && id.Obj != nil {
		if b, ok := lookup(env, id.Obj); ok {
			return s.evalDefault(b.file, b.arg, b.env)
		}
	}
	if sel, ok := e.(*ast.SelectorExpr); ok {
		if ff, fe, ok := s.fieldOfDefaults(f, sel); ok {
			return s.evalDefault(ff, fe, nil)
		}
		if p := s.pkgs[f.imports[identName(sel.X)]]; p != nil && p.vars[sel.Sel.Name] != nil {
			if vf, ve, ok := s.varValue(p.vars[sel.Sel.Name], sel.Sel.Name); ok {
				return s.evalDefault(vf, ve, nil)
			}
		}
	}
	if cl, ok := e.(*ast.CompositeLit); ok {
		if _, ok := cl.Type.(*ast.ArrayType); !ok {
			return nil, false
		}
		list := []constant.Value{}
		for _, el := range cl.Elts {
			vs, err := s.evalConst(f, el, env, 0)
			if err != nil || len(vs) != 1 {
				return nil, false
			}
			list = append(list, vs[0])
		}
		return list, true
	}
	vs, err := s.evalConst(f, e, env, 0)
	if err != nil || len(vs) != 1 {
		return nil, false
	}
	return vs[0], true
}

func kindOfDefault(v any, ok bool) valKind {
	if !ok {
		return kindAny
	}
	switch v := v.(type) {
	case constant.Value:
		switch v.Kind() {
		case constant.String:
			return kindString
		case constant.Bool:
			return kindBool
		case constant.Int:
			return kindInt
		case constant.Float:
			return kindFloat
		}
	case []constant.Value:
		if len(v) > 0 {
			switch v[0].Kind() {
			case constant.String:
				return kindStringSlice
			case constant.Int:
				return kindIntSlice
			case constant.Float:
				return kindFloatSlice
			}
		}
	}
	return kindAny
}

// bindFlags records the keys of config.BindFlags(v, cmd, prefix, keys).
func (s *keyScanner) bindFlags(f *srcFile, call *ast.CallExpr) {
	prefixes, err := s.evalStrings(f, call.Args[2], nil, 0)
	if err != nil || len(prefixes) != 1 {
		s.issue(call, "BindFlags prefix: %v", err)
		return
	}
	prefix := prefixes[0]
	keys, ok := s.flagKeyMap(f, call.Args[3])
	if !ok {
		s.issue(call, "BindFlags keys map %s is not a map literal or a package variable holding one", exprString(call.Args[3]))
		return
	}
	cmdObj := s.commandObject(call.Args[1])
	if cmdObj == nil {
		s.issue(call, "BindFlags: cannot tell which command %s is", exprString(call.Args[1]))
		return
	}
	scope := s.enclosingFuncDecl(call)
	if scope == nil {
		s.issue(call, "BindFlags outside a function")
		return
	}
	flags := s.flagDefs(f, scope.Body, cmdObj, nil, nil, 0)
	if len(flags) == 0 {
		s.issue(call, "BindFlags: no flag definitions found for %s", exprString(call.Args[1]))
	}
	for _, fd := range flags {
		key, ok := keys[fd.name]
		if !ok {
			key = strings.ReplaceAll(fd.name, "-", "_")
			if prefix != "" {
				key = prefix + "." + key
			}
		}
		s.uses = append(s.uses, keyUse{Key: strings.ToLower(key), Kind: fd.kind, Pos: fd.pos,
			How: "flag --" + fd.name, Default: fd.def, HasDefault: fd.hasDef})
	}
}

// flagKeyMap resolves the keys argument of BindFlags: nil, a map literal, or a package-level
// variable holding one (plus assignments m["flag"] = "key" anywhere in the package).
func (s *keyScanner) flagKeyMap(f *srcFile, e ast.Expr) (map[string]string, bool) {
	m := map[string]string{}
	addLit := func(f *srcFile, cl *ast.CompositeLit) bool {
		for _, el := range cl.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				return false
			}
			k, err1 := s.evalStrings(f, kv.Key, nil, 0)
			v, err2 := s.evalStrings(f, kv.Value, nil, 0)
			if err1 != nil || err2 != nil || len(k) != 1 || len(v) != 1 {
				return false
			}
			m[k[0]] = v[0]
		}
		return true
	}
	switch e := e.(type) {
	case *ast.Ident:
		if e.Name == "nil" && e.Obj == nil {
			return m, true
		}
		vs := f.pkg.vars[e.Name]
		if vs == nil || len(vs.Values) != len(vs.Names) {
			return nil, false
		}
		vf := s.fileOf(vs)
		for i, n := range vs.Names {
			if n.Name == e.Name {
				cl, ok := vs.Values[i].(*ast.CompositeLit)
				if !ok || !addLit(vf, cl) {
					return nil, false
				}
			}
		}
		// m["flag"] = "key" assignments.
		okAll := true
		for _, pf := range f.pkg.files {
			ast.Inspect(pf.ast, func(n ast.Node) bool {
				as, ok := n.(*ast.AssignStmt)
				if !ok || len(as.Lhs) != len(as.Rhs) {
					return true
				}
				for i, l := range as.Lhs {
					ix, ok := l.(*ast.IndexExpr)
					if !ok || identName(ix.X) != e.Name {
						continue
					}
					k, err1 := s.evalStrings(pf, ix.Index, nil, 0)
					v, err2 := s.evalStrings(pf, as.Rhs[i], nil, 0)
					if err1 != nil || err2 != nil || len(k) != 1 || len(v) != 1 {
						okAll = false
						continue
					}
					m[k[0]] = v[0]
				}
				return true
			})
		}
		return m, okAll
	case *ast.CompositeLit:
		return m, addLit(f, e)
	}
	return nil, false
}

// commandObject is the variable holding the *cobra.Command an expression denotes: the variable
// itself, or, for the parameter of a Run/RunE closure in a &cobra.Command{...} literal, the variable
// that literal is assigned to.
func (s *keyScanner) commandObject(e ast.Expr) *ast.Object {
	id, ok := e.(*ast.Ident)
	if !ok || id.Obj == nil {
		return nil
	}
	field, ok := id.Obj.Decl.(*ast.Field)
	if !ok {
		return id.Obj
	}
	// field -> FieldList -> FuncType -> FuncLit -> KeyValueExpr (RunE) -> CompositeLit -> & -> assign
	n := s.parents[s.parents[s.parents[field]]]
	lit, ok := n.(*ast.FuncLit)
	if !ok {
		return id.Obj
	}
	kv, ok := s.parents[lit].(*ast.KeyValueExpr)
	if !ok {
		return id.Obj
	}
	switch identName(kv.Key) {
	case "Run", "RunE", "PreRun", "PreRunE", "PostRun", "PostRunE":
	default:
		return id.Obj
	}
	var up ast.Node = s.parents[kv] // CompositeLit
	if u, ok := s.parents[up].(*ast.UnaryExpr); ok {
		up = u
	}
	as, ok := s.parents[up].(*ast.AssignStmt)
	if !ok {
		return nil
	}
	for i, r := range as.Rhs {
		if r == up && i < len(as.Lhs) {
			if li, ok := as.Lhs[i].(*ast.Ident); ok {
				return li.Obj
			}
		}
	}
	return nil
}

func (s *keyScanner) enclosingFuncDecl(n ast.Node) *ast.FuncDecl {
	for n != nil {
		if fd, ok := n.(*ast.FuncDecl); ok {
			return fd
		}
		n = s.parents[n]
	}
	return nil
}

type flagDef struct {
	name   string
	kind   valKind
	def    any
	hasDef bool
	pos    string
}

// flagDefs collects the flags defined in body on the command cmdObj or on the flag set fsObj (at
// most one of them is set by a helper call; both may be nil in the command's own function, where
// cmdObj is set). env binds the helper's parameters to its call's arguments.
func (s *keyScanner) flagDefs(f *srcFile, body *ast.BlockStmt, cmdObj, fsObj *ast.Object, env []binding, depth int) []flagDef {
	if depth > maxDepth || body == nil {
		return nil
	}
	// isCmd / isFlagSet recognize expressions denoting the command and its flag set.
	isCmd := func(e ast.Expr) bool {
		id, ok := e.(*ast.Ident)
		return ok && id.Obj != nil && id.Obj == cmdObj
	}
	var fsVars []*ast.Object
	if fsObj != nil {
		fsVars = append(fsVars, fsObj)
	}
	isFlagSet := func(e ast.Expr) bool {
		if c, ok := e.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Flags" && isCmd(sel.X) {
				return true
			}
		}
		if id, ok := e.(*ast.Ident); ok && id.Obj != nil {
			for _, o := range fsVars {
				if o == id.Obj {
					return true
				}
			}
		}
		return false
	}
	var out []flagDef
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt: // f := cmd.Flags()
			if len(n.Lhs) == len(n.Rhs) {
				for i, r := range n.Rhs {
					if li, ok := n.Lhs[i].(*ast.Ident); ok && li.Obj != nil && isFlagSet(r) {
						fsVars = append(fsVars, li.Obj)
					}
				}
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && isFlagSet(sel.X) {
				if fd, ok := s.flagDef(f, n, sel.Sel.Name, env); ok {
					out = append(out, fd)
				}
				return true
			}
			// A helper given the command or its flag set: helper(cmd.Flags(), ...), libFlags(cmd).
			// Method calls (parent.AddCommand(cmd)) define no flags.
			if _, ok := n.Fun.(*ast.Ident); !ok {
				return true
			}
			for i, a := range n.Args {
				var asCmd bool
				switch {
				case isCmd(a):
					asCmd = true
				case isFlagSet(a):
				default:
					continue
				}
				hf, ftype, hbody := s.callee(f, n)
				if hbody == nil {
					s.issue(n, "flags passed to %s, whose body is not found", exprString(n.Fun))
					continue
				}
				params := paramObjects(ftype)
				if i >= len(params) {
					continue
				}
				var henv []binding
				for j, p := range params {
					if j < len(n.Args) && p != nil {
						henv = append(henv, binding{obj: p, arg: n.Args[j], file: f, env: env})
					}
				}
				if asCmd {
					out = append(out, s.flagDefs(hf, hbody, params[i], nil, henv, depth+1)...)
				} else {
					out = append(out, s.flagDefs(hf, hbody, nil, params[i], henv, depth+1)...)
				}
			}
		}
		return true
	})
	return out
}

// callee finds the body of the function a call calls: a package-level function or a closure
// assigned to a local variable.
func (s *keyScanner) callee(f *srcFile, call *ast.CallExpr) (*srcFile, *ast.FuncType, *ast.BlockStmt) {
	id, ok := call.Fun.(*ast.Ident)
	if !ok {
		return nil, nil, nil
	}
	if id.Obj != nil {
		switch d := id.Obj.Decl.(type) {
		case *ast.FuncDecl:
			return f, d.Type, d.Body
		case *ast.AssignStmt:
			for i, l := range d.Lhs {
				if identName(l) == id.Name && i < len(d.Rhs) {
					if fl, ok := d.Rhs[i].(*ast.FuncLit); ok {
						return f, fl.Type, fl.Body
					}
				}
			}
		}
		return nil, nil, nil
	}
	if fd := f.pkg.funcs[id.Name]; fd != nil {
		return s.fileOf(fd), fd.Type, fd.Body
	}
	return nil, nil, nil
}

func paramObjects(ft *ast.FuncType) []*ast.Object {
	var out []*ast.Object
	for _, fl := range ft.Params.List {
		if len(fl.Names) == 0 {
			out = append(out, nil)
		}
		for _, n := range fl.Names {
			out = append(out, n.Obj)
		}
	}
	return out
}

// flagDef decodes f.String("name", def, usage) and its P / Var / VarP forms.
func (s *keyScanner) flagDef(f *srcFile, call *ast.CallExpr, method string, env []binding) (flagDef, bool) {
	base, nameIdx, defIdx := method, 0, 1
	switch {
	case strings.HasSuffix(method, "VarP"):
		base, nameIdx, defIdx = strings.TrimSuffix(method, "VarP"), 1, 3
	case strings.HasSuffix(method, "Var"):
		base, nameIdx, defIdx = strings.TrimSuffix(method, "Var"), 1, 2
	case strings.HasSuffix(method, "P") && flagKinds[strings.TrimSuffix(method, "P")] != "":
		base, defIdx = strings.TrimSuffix(method, "P"), 2
	}
	kind, ok := flagKinds[base]
	if !ok {
		if method != "VisitAll" && method != "Parse" && method != "Lookup" && method != "Set" &&
			method != "MarkHidden" && method != "SetInterspersed" {
			s.issue(call, "flag definition %s not understood", method)
		}
		return flagDef{}, false
	}
	if len(call.Args) <= defIdx {
		s.issue(call, "flag definition %s with too few arguments", method)
		return flagDef{}, false
	}
	names, err := s.evalStrings(f, call.Args[nameIdx], env, 0)
	if err != nil || len(names) != 1 {
		s.issue(call, "flag name: %v", err)
		return flagDef{}, false
	}
	def, has := s.evalDefault(f, call.Args[defIdx], env)
	return flagDef{name: names[0], kind: kind, def: def, hasDef: has, pos: s.pos(call)}, true
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return exprString(e.Fun) + "(...)"
	case *ast.BasicLit:
		return e.Value
	case *ast.BinaryExpr:
		return exprString(e.X) + " " + e.Op.String() + " " + exprString(e.Y)
	}
	return fmt.Sprintf("%T", e)
}

// varValue is the initial value of a package-level variable.
func (s *keyScanner) varValue(vs *ast.ValueSpec, name string) (*srcFile, ast.Expr, bool) {
	for i, n := range vs.Names {
		if n.Name == name && i < len(vs.Values) && len(vs.Values) == len(vs.Names) {
			return s.fileOf(vs), vs.Values[i], true
		}
	}
	return nil, nil, false
}

// fieldOfDefaults resolves d.Field where d := pkg.DefaultX() and DefaultX (a function of this
// module without parameters) returns a composite literal: the expression given for Field there.
func (s *keyScanner) fieldOfDefaults(f *srcFile, sel *ast.SelectorExpr) (*srcFile, ast.Expr, bool) {
	id, ok := sel.X.(*ast.Ident)
	if !ok || id.Obj == nil {
		return nil, nil, false
	}
	as, ok := id.Obj.Decl.(*ast.AssignStmt)
	if !ok || len(as.Lhs) != 1 || len(as.Rhs) != 1 {
		return nil, nil, false
	}
	call, ok := as.Rhs[0].(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return nil, nil, false
	}
	var fd *ast.FuncDecl
	switch fn := call.Fun.(type) {
	case *ast.SelectorExpr:
		if p := s.pkgs[f.imports[identName(fn.X)]]; p != nil {
			fd = p.funcs[fn.Sel.Name]
		}
	case *ast.Ident:
		fd = f.pkg.funcs[fn.Name]
	}
	if fd == nil || fd.Body == nil || len(fd.Body.List) != 1 {
		return nil, nil, false
	}
	ret, ok := fd.Body.List[0].(*ast.ReturnStmt)
	if !ok || len(ret.Results) != 1 {
		return nil, nil, false
	}
	r := ret.Results[0]
	if u, ok := r.(*ast.UnaryExpr); ok && u.Op == token.AND {
		r = u.X
	}
	cl, ok := r.(*ast.CompositeLit)
	if !ok {
		return nil, nil, false
	}
	for _, el := range cl.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok && identName(kv.Key) == sel.Sel.Name {
			return s.fileOf(fd), kv.Value, true
		}
	}
	return nil, nil, false
}

// binaryOp is constant.BinaryOp / constant.Shift that returns an unknown value instead of panicking
// on operands it does not take (a string plus an int, a comparison).
func binaryOp(x constant.Value, op token.Token, y constant.Value) (r constant.Value) {
	defer func() {
		if recover() != nil {
			r = constant.MakeUnknown()
		}
	}()
	switch op {
	case token.SHL, token.SHR:
		n, ok := constant.Uint64Val(y)
		if !ok {
			return constant.MakeUnknown()
		}
		return constant.Shift(x, op, uint(n))
	case token.EQL, token.NEQ, token.LSS, token.LEQ, token.GTR, token.GEQ:
		return constant.MakeBool(constant.Compare(x, op, y))
	}
	if op == token.QUO && x.Kind() == constant.Int && y.Kind() == constant.Int {
		op = token.QUO_ASSIGN // integer division, as Go does for untyped integer constants
	}
	return constant.BinaryOp(x, op, y)
}

func unaryOp(op token.Token, x constant.Value) (r constant.Value) {
	defer func() {
		if recover() != nil {
			r = constant.MakeUnknown()
		}
	}()
	return constant.UnaryOp(op, x, 0)
}
