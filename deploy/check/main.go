// Command check validates SkySentry's container deployment without a Docker engine:
//
//   - docker-compose.yml is loaded by compose-go, the loader Docker Compose itself uses, with
//     schema validation, interpolation (of the defaults in the file: the shell's environment is
//     ignored unless -os-env is given, so the result does not depend on who runs it),
//     normalisation, the consistency checks and every profile enabled; then each build's
//     context and Dockerfile, each bind mount's source and each variable's default are checked.
//   - The Prometheus config the compose file mounts is loaded by Prometheus' own config package
//     (what `promtool check config` does).
//   - Every Dockerfile (those the compose file builds, and deploy/docker/Dockerfile*) is parsed
//     by BuildKit's parser and linted by the same code as `docker build --check` (base images
//     are not pulled: a stand-in resolver answers with an empty image config), then: the
//     sources of COPY/ADD exist in the build context and are not excluded by .dockerignore,
//     COPY --from names an earlier stage, and the final stage runs as a non-root user with
//     ENTRYPOINT ["skysentry"].
//   - The Helm chart deploy/helm/skysentry: helm lint and helm template over its default, GPU
//     and Strimzi values, every object decoded strictly with the Kubernetes, KEDA and
//     Prometheus Operator Go types (KafkaTopic against a structural schema), then the
//     properties listed in helm.go.
//
// Run it with deploy/check/run.sh; it exits 1 on any problem and says what to fix.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v4"
)

// problems collects every failure, so one run reports them all.
type problems []string

func (p *problems) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, have := range *p {
		if have == msg {
			return // e.g. a parse error both the linter and instructions.Parse report
		}
	}
	*p = append(*p, msg)
}

func main() {
	root := flag.String("root", ".", "repository root (the build context of the images)")
	composeFile := flag.String("compose", "docker-compose.yml", "compose file, relative to -root")
	osEnv := flag.Bool("os-env", false, "interpolate with this shell's environment and .env too, as `docker compose` would")
	printModel := flag.Bool("print", false, "print the resolved compose model, as `docker compose config` would")
	flag.Parse()

	absRoot, err := filepath.Abs(*root)
	if err != nil {
		fail(err)
	}
	var errs problems
	dockerfiles := map[string]bool{}

	project := checkCompose(absRoot, *composeFile, *osEnv, &errs)
	if project != nil && *printModel {
		out, err := project.MarshalYAML()
		if err != nil {
			fail(err)
		}
		fmt.Println(string(out))
	}
	if project != nil {
		for _, name := range sortedKeys(project.Services) {
			s := project.Services[name]
			if s.Build != nil {
				dockerfiles[filepath.Join(s.Build.Context, s.Build.Dockerfile)] = true
			}
		}
	}
	more, _ := filepath.Glob(filepath.Join(absRoot, "deploy", "docker", "Dockerfile*"))
	for _, f := range more {
		dockerfiles[f] = true
	}
	checkPrometheus(absRoot, project, &errs)
	ignore := readDockerignore(absRoot, &errs)
	for _, f := range sortedKeys(dockerfiles) {
		checkDockerfile(absRoot, f, ignore, &errs)
	}
	checkHelm(absRoot, &errs)

	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "\n%d problem(s):\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "  - %s\n", e)
		}
		os.Exit(1)
	}
	fmt.Println("deploy check: OK")
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "deploy check: %v\n", err)
	os.Exit(1)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------

func checkCompose(root, file string, osEnv bool, errs *problems) *types.Project {
	path := filepath.Join(root, file)
	fmt.Printf("compose: %s\n", rel(root, path))

	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(root),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithProfiles([]string{"*"}), // the gpu profile's services are checked too
	}
	if osEnv {
		opts = append(opts, cli.WithOsEnv, cli.WithDotEnv)
	} else {
		opts = append(opts, cli.WithEnv([]string{}))
	}
	options, err := cli.NewProjectOptions([]string{path}, opts...)
	if err != nil {
		errs.add("%s: %v", file, err)
		return nil
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		errs.add("%s does not load: %v", file, err)
		return nil
	}

	checkVariablesHaveDefaults(path, file, errs)

	for _, name := range sortedKeys(project.Services) {
		s := project.Services[name]
		what := []string{}
		if s.Build != nil {
			ctxDir := s.Build.Context
			if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
				errs.add("service %s: build context %s is not a directory", name, rel(root, ctxDir))
			}
			df := filepath.Join(ctxDir, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				errs.add("service %s: build.dockerfile %s does not exist", name, rel(root, df))
			}
			what = append(what, "build "+rel(root, df))
		} else {
			what = append(what, "image "+s.Image)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					errs.add("service %s: bind mount source %s does not exist", name, rel(root, v.Source))
				}
			}
		}
		if len(s.Command) > 0 {
			what = append(what, "command "+strings.Join(s.Command, " "))
		}
		if len(s.Profiles) > 0 {
			what = append(what, "profiles "+strings.Join(s.Profiles, ","))
		}
		fmt.Printf("  %-11s %s\n", name, strings.Join(what, "; "))
	}
	return project
}

// A variable without a default (${VAR}, $VAR) is blanked with only a warning by Compose when
// the shell does not set it; in this file every variable must say what it falls back to
// (${VAR:-default}) or fail loudly (${VAR:?message}).
var variableRef = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)

func checkVariablesHaveDefaults(path, file string, errs *problems) {
	data, err := os.ReadFile(path)
	if err != nil {
		errs.add("%s: %v", file, err)
		return
	}
	var model any
	if err := yaml.Unmarshal(data, &model); err != nil {
		errs.add("%s: %v", file, err)
		return
	}
	reported := map[string]bool{} // anchors repeat a value in every service that merges it
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			s := strings.ReplaceAll(v, "$$", "") // $$ is a literal dollar
			for _, m := range variableRef.FindAllStringSubmatch(s, -1) {
				name, modifier := m[1], m[2]
				if name == "" {
					name = m[3]
				}
				if !reported[name] && !(strings.HasPrefix(modifier, ":-") || strings.HasPrefix(modifier, "-") ||
					strings.HasPrefix(modifier, ":?") || strings.HasPrefix(modifier, "?")) {
					reported[name] = true
					errs.add("%s: variable %s has no default: write ${%s:-default} (or ${%s:?why it is needed})",
						file, name, name, name)
				}
			}
		}
	}
	walk(model)
}

// ---------------------------------------------------------------------------------------------
// prometheus.yml: loaded by Prometheus' own config package (what `promtool check config` does)
// ---------------------------------------------------------------------------------------------

func checkPrometheus(root string, project *types.Project, errs *problems) {
	if project == nil {
		return
	}
	for _, name := range sortedKeys(project.Services) {
		s := project.Services[name]
		if !strings.HasPrefix(s.Image, "prom/prometheus") {
			continue
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind || v.Target != "/etc/prometheus/prometheus.yml" {
				continue
			}
			cfg, err := promconfig.LoadFile(v.Source, false, promslog.NewNopLogger())
			if err != nil {
				errs.add("%s (service %s): %v", rel(root, v.Source), name, err)
				continue
			}
			jobs := []string{}
			for _, sc := range cfg.ScrapeConfigs {
				jobs = append(jobs, sc.JobName)
			}
			fmt.Printf("prometheus: %s: %d scrape job(s): %s\n", rel(root, v.Source), len(jobs), strings.Join(jobs, ", "))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------------------------

func readDockerignore(root string, errs *problems) *patternmatcher.PatternMatcher {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		errs.add(".dockerignore: %v (the build context would include .venv, .git and local state)", err)
		return nil
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		errs.add(".dockerignore: %v", err)
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		errs.add(".dockerignore: %v", err)
		return nil
	}
	return pm
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles
// ---------------------------------------------------------------------------------------------

// emptyImage answers every base-image lookup with an empty config (plus the PATH any base
// image has), so linting needs no registry. Whether a tag exists is checked by `docker build`.
type emptyImage struct{}

func (emptyImage) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers"},
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	}
	dt, err := json.Marshal(config)
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes([]byte(ref)), dt, nil
}

// sourceMap names the Dockerfile in lint results; the lint code expects a marshalled
// definition beside it, as the frontend has (an empty one will do).
func sourceMap(name string, data []byte) *llb.SourceMap {
	sm := llb.NewSourceMap(nil, name, "Dockerfile", data)
	sm.Definition = &llb.Definition{}
	return sm
}

func checkDockerfile(root, path string, ignore *patternmatcher.PatternMatcher, errs *problems) {
	name := rel(root, path)
	data, err := os.ReadFile(path)
	if err != nil {
		errs.add("%s: %v", name, err)
		return
	}

	// 1. Syntax.
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		errs.add("%s: does not parse: %v", name, err)
		return
	}
	for _, w := range res.Warnings {
		errs.add("%s:%d: %s", name, w.Location.Start.Line, w.Short)
	}

	// 2. What `docker build --check` reports: instruction semantics, stage references, base
	//    image references, ARG/ENV use, the lint rules.
	lint, err := dockerfile2llb.DockerfileLint(context.Background(), data, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    sourceMap(name, data),
		MetaResolver: emptyImage{},
	})
	if err != nil {
		errs.add("%s: lint failed to run: %v", name, err)
		return
	}
	if lint.Error != nil {
		errs.add("%s: %s", name, lint.Error.Message)
	}
	for _, w := range lint.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		errs.add("%s:%d: %s: %s (%s)", name, line, w.RuleName, w.Detail, w.URL)
	}

	// 3. Stages and instructions, for the checks `docker build --check` leaves to build time.
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		errs.add("%s: %v", name, err)
		return
	}
	if len(stages) == 0 {
		errs.add("%s: no FROM", name)
		return
	}
	copies, notes := 0, []string{}
	for i, stage := range stages {
		for _, cmd := range stage.Commands {
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From == "" {
					copies += checkSources(root, name, c.Location(), c.SourcePaths, ignore, errs, &notes)
				} else {
					checkCopyFrom(name, c, stages[:i], errs)
				}
			case *instructions.AddCommand:
				copies += checkSources(root, name, c.Location(), c.SourcePaths, ignore, errs, &notes)
			}
		}
	}

	final := stages[len(stages)-1]
	user, entrypoint := "", []string(nil)
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = c.CmdLine
			if c.PrependShell {
				entrypoint = append([]string{"/bin/sh", "-c"}, entrypoint...)
			}
		}
	}
	uid := strings.SplitN(user, ":", 2)[0]
	if uid == "" || uid == "root" || uid == "0" {
		errs.add("%s: the final stage (%s) runs as root: add USER with a non-root uid", name, stageName(final))
	}
	if len(entrypoint) != 1 || entrypoint[0] != "skysentry" {
		errs.add(`%s: the final stage's ENTRYPOINT is %q, want ["skysentry"]`, name, entrypoint)
	}
	fmt.Printf("dockerfile: %s: %d stage(s) (%s), %d COPY source(s) checked, user %s\n",
		name, len(stages), stageNames(stages), copies, user)
	for _, n := range notes {
		fmt.Printf("  note: %s\n", n)
	}
}

// checkCopyFrom: BuildKit reads an unknown --from name as an image to pull, so a misspelt
// stage name passes the lint and fails only at build time (pull access denied). A --from
// must name an earlier stage (or its index), or be an explicit image reference (with / or :).
func checkCopyFrom(dockerfile string, c *instructions.CopyCommand, earlier []instructions.Stage, errs *problems) {
	for i, s := range earlier {
		if strings.EqualFold(c.From, s.Name) || c.From == fmt.Sprint(i) {
			return
		}
	}
	if strings.ContainsAny(c.From, "/:") {
		return
	}
	line := 0
	if loc := c.Location(); len(loc) > 0 {
		line = loc[0].Start.Line
	}
	errs.add("%s:%d: COPY --from=%s names no earlier stage (have: %s); write the stage's name, or a full image reference",
		dockerfile, line, c.From, stageNames(earlier))
}

func stageName(s instructions.Stage) string {
	if s.Name != "" {
		return s.Name
	}
	return s.BaseName
}

func stageNames(stages []instructions.Stage) string {
	names := make([]string, len(stages))
	for i, s := range stages {
		names[i] = stageName(s)
	}
	return strings.Join(names, " → ")
}

// checkSources verifies that each COPY/ADD source lies in the build context, exists, and is
// not excluded by .dockerignore (a directory must keep at least one file). It also says when
// a source has no file tracked by git: a build from a fresh clone would not find it.
func checkSources(root, dockerfile string, loc []parser.Range, sources []string, ignore *patternmatcher.PatternMatcher,
	errs *problems, notes *[]string) int {
	line := 0
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	n := 0
	for _, src := range sources {
		n++
		if strings.Contains(src, "://") || strings.ContainsAny(src, "$") {
			continue // a URL or a build-arg path: nothing to look at on disk
		}
		clean := filepath.Clean(strings.TrimPrefix(src, "/"))
		if clean == ".." || strings.HasPrefix(clean, "../") {
			errs.add("%s:%d: COPY source %s is outside the build context", dockerfile, line, src)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(root, clean))
		if len(matches) == 0 {
			errs.add("%s:%d: COPY source %s does not exist in the build context (%s)", dockerfile, line, src, root)
			continue
		}
		for _, m := range matches {
			relPath := rel(root, m)
			kept, total := 0, 0
			_ = filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				total++
				excluded := false
				if ignore != nil {
					excluded, _ = ignore.MatchesOrParentMatches(filepath.ToSlash(rel(root, p)))
				}
				if !excluded {
					kept++
				}
				return nil
			})
			st, _ := os.Stat(m)
			if ignore != nil {
				if excluded, _ := ignore.MatchesOrParentMatches(filepath.ToSlash(relPath)); excluded {
					errs.add("%s:%d: COPY source %s is excluded by .dockerignore", dockerfile, line, relPath)
					continue
				}
			}
			if st != nil && !st.IsDir() && kept == 0 {
				errs.add("%s:%d: COPY source %s is excluded by .dockerignore", dockerfile, line, relPath)
			} else if st != nil && st.IsDir() && total > 0 && kept == 0 {
				errs.add("%s:%d: every file of COPY source %s is excluded by .dockerignore", dockerfile, line, relPath)
			}
			if !gitTracks(root, relPath) {
				*notes = append(*notes, fmt.Sprintf("%s:%d: COPY source %s has no file tracked by git yet: "+
					"a build from a fresh clone fails here until it is committed", dockerfile, line, relPath))
			}
		}
	}
	return n
}

func gitTracks(root, path string) bool {
	cmd := exec.Command("git", "ls-files", "--", path)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return true // not a git checkout (e.g. a source tarball): nothing to say
	}
	return len(bytes.TrimSpace(out)) > 0
}
