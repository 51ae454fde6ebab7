#!/usr/bin/env bash
# install-emulators.sh: install the local AWS emulators into the repo cache.
#
#   <cache>/dynamodb-local/  DynamoDB Local 3.x (Maven Central) + sqlite4java natives
#   <cache>/moto-venv/       moto[server] in a Python virtualenv (PyPI)
#
# <cache> is $CMS_CACHE_DIR, default <repo>/.cache (git-ignored).
# Idempotent: a component whose marker file (.installed) matches the wanted
# version is skipped, so a second run takes well under a second. Concurrent
# runs (parallel `go test` binaries) are serialised by a lock in <cache>.
#
# Usage: local/scripts/install-emulators.sh [--force] [--quiet] [dynamodb-local|moto]...
#   no component named: both.  --force: reinstall even if the marker matches.
#   --quiet: print nothing when everything is installed already (used by Go).
#
# Environment:
#   CMS_CACHE_DIR               cache directory (default <repo>/.cache)
#   CMS_DYNAMODB_LOCAL_VERSIONS versions to try, in order (default "3.3.1 3.1.0 3.0.0")
#   CMS_MOTO_VERSION            moto version (default 5.2.5)
#   CMS_PYTHON                  interpreter for the virtualenv (default python3)
#   JAVA_HOME                   used for java if set, else java from PATH
#
# Needs: bash, java 17+, mvn, python3 (>= 3.9, with venv), curl or python3 for the checks.
set -euo pipefail

DDB_VERSIONS=${CMS_DYNAMODB_LOCAL_VERSIONS:-"3.3.1 3.1.0 3.0.0"}
MOTO_VERSION=${CMS_MOTO_VERSION:-5.2.5}
# moto's SQS can lose a message sent while another is deleted; patch-moto.py fixes it in the
# virtualenv. Bumping this id re-applies the patch to an existing cache.
MOTO_PATCH=sqs-delete-lock-1
PYTHON=${CMS_PYTHON:-python3}
# JVM flags for a fast start (see docs/local-emulators.md); the Go package uses the same.
DDB_JAVA_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${CMS_CACHE_DIR:-$root/.cache}
ddb_dir=$cache/dynamodb-local
moto_dir=$cache/moto-venv

force=0
quiet=0
want_ddb=0
want_moto=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--quiet | -q) quiet=1 ;;
	dynamodb-local | dynamodb | ddb) want_ddb=1 ;;
	moto) want_moto=1 ;;
	-h | --help)
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*)
		echo "install-emulators: unknown argument: $arg (try --help)" >&2
		exit 2
		;;
	esac
done
if ((want_ddb == 0 && want_moto == 0)); then
	want_ddb=1
	want_moto=1
fi

SECONDS=0
start_time=${EPOCHREALTIME:-}
# elapsed: seconds since the start, with a decimal where bash can tell (bash 5+).
elapsed() {
	if [[ -n $start_time && -n ${EPOCHREALTIME:-} ]]; then
		awk -v a="$start_time" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
	else
		printf '%d' "$SECONDS"
	fi
}
say() { printf '[emulators] %s\n' "$*"; }
die() {
	printf '[emulators] ERROR: %s\n' "$*" >&2
	exit 1
}
# show_log FILE: the tail of a tool's log, after a failure.
show_log() {
	if [[ -s $1 ]]; then
		printf '[emulators] ---- last lines of %s ----\n' "$1" >&2
		tail -n 40 "$1" >&2
		printf '[emulators] ---- end of log ----\n' >&2
	fi
}

marker_value() { # marker_value FILE KEY
	sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n 1
}
# The markers are written last, so they can be read without the lock.
ddb_installed() {
	((force == 0)) && [[ -f $ddb_dir/.installed ]] &&
		[[ $(marker_value "$ddb_dir/.installed" spec) == "$DDB_VERSIONS" ]]
}
moto_installed() {
	moto_spec_installed && [[ $(marker_value "$moto_dir/.installed" patch) == "$MOTO_PATCH" ]]
}
moto_spec_installed() {
	((force == 0)) && [[ -f $moto_dir/.installed && -x $moto_dir/bin/moto_server ]] &&
		[[ $(marker_value "$moto_dir/.installed" spec) == "moto[server]==$MOTO_VERSION" ]]
}
if ((quiet)) && { ((want_ddb == 0)) || ddb_installed; } && { ((want_moto == 0)) || moto_installed; }; then
	exit 0
fi

mkdir -p "$cache"

# ---------------------------------------------------------------- lock
# flock where it exists (Linux); a mkdir lock with a pid check elsewhere (macOS).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.emulators.lock"
	if ! flock -n 9; then
		say "another install is running; waiting for it"
		flock 9
	fi
else
	lockdir=$cache/.emulators.lock.d
	waited=0
	until mkdir "$lockdir" 2>/dev/null; do
		holder=$(cat "$lockdir/pid" 2>/dev/null || true)
		if [[ -n $holder ]] && ! kill -0 "$holder" 2>/dev/null; then
			rm -rf "$lockdir"
			continue
		fi
		((waited == 0)) && say "another install is running; waiting for it"
		waited=1
		sleep 1
	done
	echo $$ >"$lockdir/pid"
	trap 'rm -rf "$lockdir"' EXIT
fi

# ---------------------------------------------------------------- helpers
free_port() {
	if command -v "$PYTHON" >/dev/null 2>&1; then
		"$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	else
		echo $((20000 + RANDOM % 20000))
	fi
}

# http_code METHOD URL [BODY [TARGET]]: prints the HTTP status (000 when nothing answers)
# and leaves the body in $http_body_file (set by the caller: one per component).
http_code() {
	local method=$1 url=$2 body=${3:-} target=${4:-}
	if command -v curl >/dev/null 2>&1; then
		local args=(-s -m 5 -o "$http_body_file" -w '%{http_code}' -X "$method")
		if [[ -n $target ]]; then
			args+=(-H "X-Amz-Target: $target" -H 'Content-Type: application/x-amz-json-1.0'
				-H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0')
		fi
		[[ -n $body ]] && args+=(--data-binary "$body")
		curl "${args[@]}" "$url" || true
	else
		"$PYTHON" - "$method" "$url" "$body" "$target" "$http_body_file" <<'PY' || echo 000
import sys, urllib.request, urllib.error
method, url, body, target, out = sys.argv[1:6]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
if target:
    req.add_header("X-Amz-Target", target)
    req.add_header("Content-Type", "application/x-amz-json-1.0")
    req.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
try:
    r = urllib.request.urlopen(req, timeout=5); code, data = r.status, r.read()
except urllib.error.HTTPError as e:
    code, data = e.code, e.read()
except Exception:
    code, data = 0, b""
open(out, "wb").write(data)
print("%03d" % code)
PY
	fi
}

# extract JAR ENTRY DEST: copy one entry of a zip file.
extract() {
	local jar=$1 entry=$2 dest=$3
	mkdir -p "$(dirname "$dest")"
	if command -v unzip >/dev/null 2>&1; then
		unzip -p "$jar" "$entry" >"$dest" 2>/dev/null && [[ -s $dest ]] && return 0
	else
		"$PYTHON" -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
			"$jar" "$entry" "$dest" 2>/dev/null && [[ -s $dest ]] && return 0
	fi
	rm -f "$dest"
	return 1
}

# wait_http NAME PID URL CODE TIMEOUT [BODY TARGET]: poll until URL answers CODE.
wait_http() {
	local name=$1 pid=$2 url=$3 want=$4 timeout=$5 body=${6:-} target=${7:-}
	local deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited before it answered" >&2
			return 1
		fi
		[[ $(http_code POST "$url" "$body" "$target") == "$want" ]] && return 0
		sleep 0.2
	done
	echo "$name did not answer within ${timeout}s" >&2
	return 1
}

# ---------------------------------------------------------------- DynamoDB Local
install_dynamodb_local() {
	local tag='[dynamodb-local]'
	if ddb_installed; then
		say "$tag DynamoDB Local $(marker_value "$ddb_dir/.installed" version) already installed in $ddb_dir"
		return 0
	fi

	local java=java
	[[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]] && java=$JAVA_HOME/bin/java
	command -v "$java" >/dev/null 2>&1 || die "$tag java not found: DynamoDB Local 3.x needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
	local jver major
	jver=$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
	major=${jver%%.*}
	[[ $major == 1 ]] && major=$(echo "$jver" | cut -d. -f2)
	if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 17)); then
		die "$tag Java 17+ needed, found '$jver' ($java)"
	fi
	command -v mvn >/dev/null 2>&1 || die "$tag mvn not found: it fetches DynamoDB Local from Maven Central (Debian: apt-get install maven)"

	say "$tag installing into $ddb_dir (Java $jver)"
	http_body_file=$(mktemp)
	trap 'rm -f "$http_body_file"' EXIT # this function runs in its own subshell
	rm -rf "$ddb_dir"
	mkdir -p "$ddb_dir/run"
	local log=$ddb_dir/install.log
	: >"$log"

	local v got=""
	for v in $DDB_VERSIONS; do
		say "$tag downloading software.amazon.dynamodb:DynamoDBLocal:$v and its dependencies from Maven Central (mvn; log: $log)"
		rm -rf "${ddb_dir:?}/lib"
		if mvn -B -q -f "$here/dynamodb-local.pom.xml" \
			-Ddynamodb.local.version="$v" -Ddynamodb.local.dir="$ddb_dir/lib" \
			dependency:copy-dependencies >>"$log" 2>&1 &&
			[[ -f $ddb_dir/lib/DynamoDBLocal-$v.jar ]]; then
			got=$v
			break
		fi
		say "$tag DynamoDBLocal $v could not be fetched; trying the next version"
	done
	# Maven leaves target/ next to the pom; it holds nothing we need.
	rm -rf "$here/target"
	if [[ -z $got ]]; then
		show_log "$log"
		die "$tag none of DynamoDBLocal versions '$DDB_VERSIONS' could be downloaded"
	fi
	local jar=$ddb_dir/lib/DynamoDBLocal-$got.jar
	say "$tag fetched DynamoDB Local $got ($(find "$ddb_dir/lib" -name '*.jar' | wc -l | tr -d ' ') jars, $(du -sh "$ddb_dir/lib" | cut -f1))"

	# sqlite4java natives. DynamoDB Local 3.x bundles them in its jar under
	# .../sqlite/native/<OS>/<arch>/ and loads <org.sqlite.lib.path>/libsqlite4java.so
	# when that property is set; otherwise it extracts a copy into java.io.tmpdir on
	# every start. We extract once here, one folder per GOOS-GOARCH.
	local native=$ddb_dir/native prefix=software/amazon/dynamodb/services/local/shared/access/sqlite/native
	mkdir -p "$native"
	local pair os goarch file n=0
	for pair in Linux/x86_64:linux-amd64:libsqlite4java.so Linux/aarch64:linux-arm64:libsqlite4java.so \
		Mac/x86_64:darwin-amd64:libsqlite4java.dylib Mac/aarch64:darwin-arm64:libsqlite4java.dylib; do
		IFS=: read -r os goarch file <<<"$pair"
		if extract "$jar" "$prefix/$os/$file" "$native/$goarch/$file"; then
			n=$((n + 1))
		fi
	done
	# The Maven artifacts of sqlite4java 1.0.392 (linux amd64/i386, osx), renamed to
	# the names sqlite4java looks for on java.library.path: for jars older than 3.x's
	# bundled loader. No linux-aarch64 artifact exists on Maven Central.
	for file in "$ddb_dir"/lib/libsqlite4java-*.so "$ddb_dir"/lib/libsqlite4java-*.dylib; do
		[[ -f $file ]] || continue
		local base=${file##*/}
		base=$(echo "$base" | sed -E 's/-[0-9][0-9.]*\.(so|dylib)$/.\1/')
		mv "$file" "$native/$base"
		n=$((n + 1))
	done
	rm -f "$ddb_dir"/lib/*.dll
	((n > 0)) || die "$tag no sqlite4java native library found in DynamoDB Local $got"
	say "$tag sqlite4java natives: $(cd "$native" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"

	local main_class
	if extract "$jar" META-INF/MANIFEST.MF "$ddb_dir/MANIFEST.MF"; then
		main_class=$(tr -d '\r' <"$ddb_dir/MANIFEST.MF" | sed -n 's/^Main-Class: *//p' | head -n 1)
		rm -f "$ddb_dir/MANIFEST.MF"
	fi
	[[ -n $main_class ]] || main_class=software.amazon.dynamodb.services.local.main.ServerRunner

	# Verify: start it in memory and create a table (this loads sqlite4java).
	local goos goarch_here libpath
	case $(uname -s) in Linux) goos=linux ;; Darwin) goos=darwin ;; *) goos=other ;; esac
	case $(uname -m) in x86_64 | amd64) goarch_here=amd64 ;; aarch64 | arm64) goarch_here=arm64 ;; *) goarch_here=other ;; esac
	local jflags=("${DDB_JAVA_OPTS[@]}" "-Djava.library.path=$native")
	libpath=$native/$goos-$goarch_here
	[[ -d $libpath ]] && jflags+=("-Dorg.sqlite.lib.path=$libpath")
	local port
	port=$(free_port)
	say "$tag checking that DynamoDB Local $got starts (port $port)"
	local t0=$SECONDS
	(cd "$ddb_dir/run" && exec "$java" "${jflags[@]}" -cp "$ddb_dir/lib/*" "$main_class" \
		-inMemory -sharedDb -disableTelemetry -port "$port") >"$ddb_dir/check.log" 2>&1 &
	local pid=$!
	local ok=0
	if wait_http "DynamoDB Local" "$pid" "http://127.0.0.1:$port/" 200 60 '{}' DynamoDB_20120810.ListTables 2>>"$log"; then
		local code
		code=$(http_code POST "http://127.0.0.1:$port/" \
			'{"TableName":"install_check","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}' \
			DynamoDB_20120810.CreateTable)
		if [[ $code == 200 ]] && grep -q TableDescription "$http_body_file"; then
			ok=1
		else
			{
				echo "CreateTable answered HTTP $code:"
				cat "$http_body_file"
			} >>"$log"
		fi
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	cat "$ddb_dir/check.log" >>"$log"
	if ((ok == 0)); then
		show_log "$log"
		die "$tag DynamoDB Local $got did not start"
	fi
	say "$tag DynamoDB Local $got answered and created a table ($((SECONDS - t0))s)"

	{
		echo "spec=$DDB_VERSIONS"
		echo "version=$got"
		echo "main_class=$main_class"
		echo "java=$jver"
		echo "installed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$ddb_dir/.installed"
	say "$tag done"
}

# ---------------------------------------------------------------- moto
install_moto() {
	local tag='[moto]'
	local spec="moto[server]==$MOTO_VERSION"
	if moto_installed; then
		say "$tag moto $MOTO_VERSION already installed in $moto_dir"
		return 0
	fi
	if moto_spec_installed; then
		# Installed before the current patch existed: patch it in place.
		"$moto_dir/bin/python" "$here/patch-moto.py" | sed "s/^/[emulators] $tag /" || die "$tag patching moto failed"
		sed -i.bak '/^patch=/d' "$moto_dir/.installed" && rm -f "$moto_dir/.installed.bak"
		echo "patch=$MOTO_PATCH" >>"$moto_dir/.installed"
		return 0
	fi
	command -v "$PYTHON" >/dev/null 2>&1 || die "$tag $PYTHON not found: moto needs Python 3.9+"
	local pyver
	pyver=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
	"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' || die "$tag Python 3.9+ needed, found $pyver"
	"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$tag $PYTHON has no venv/ensurepip (Debian: apt-get install python3-venv)"

	say "$tag installing $spec into $moto_dir (Python $pyver)"
	http_body_file=$(mktemp)
	trap 'rm -f "$http_body_file"' EXIT # this function runs in its own subshell
	# A virtualenv records its own path in its scripts: it is built in place.
	rm -rf "$moto_dir"
	mkdir -p "$moto_dir"
	local log=$cache/moto-install.log
	: >"$log"
	say "$tag creating the virtualenv"
	if ! "$PYTHON" -m venv "$moto_dir" >>"$log" 2>&1; then
		show_log "$log"
		die "$tag python -m venv failed"
	fi
	say "$tag pip install $spec from PyPI (about 30-60 s the first time; log: $log)"
	# --no-compile halves the install; modules are byte-compiled on first import.
	if ! "$moto_dir/bin/python" -m pip install --disable-pip-version-check --no-input --no-compile -q \
		"$spec" >>"$log" 2>&1; then
		show_log "$log"
		die "$tag pip install $spec failed"
	fi
	mv "$log" "$moto_dir/install.log"
	log=$moto_dir/install.log
	"$moto_dir/bin/python" "$here/patch-moto.py" | sed "s/^/[emulators] $tag /" || die "$tag patching moto failed"

	local port
	port=$(free_port)
	say "$tag checking that moto_server starts (port $port)"
	local t0=$SECONDS
	"$moto_dir/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_dir/check.log" 2>&1 &
	local pid=$! ok=0
	local deadline=$((SECONDS + 60))
	while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
		if [[ $(http_code GET "http://127.0.0.1:$port/moto-api/") == 200 ]]; then
			ok=1
			break
		fi
		sleep 0.2
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	cat "$moto_dir/check.log" >>"$log"
	if ((ok == 0)); then
		show_log "$log"
		die "$tag moto_server did not start"
	fi
	say "$tag moto_server answered ($((SECONDS - t0))s)"

	{
		echo "spec=$spec"
		echo "version=$MOTO_VERSION"
		echo "patch=$MOTO_PATCH"
		echo "python=$pyver"
		echo "installed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$moto_dir/.installed"
	say "$tag done"
}

# ---------------------------------------------------------------- main
# The two downloads (Maven Central, PyPI) run side by side when both are needed.
pids=()
names=()
if ((want_ddb)); then
	install_dynamodb_local &
	pids+=($!)
	names+=(dynamodb-local)
fi
if ((want_moto)); then
	install_moto &
	pids+=($!)
	names+=(moto)
fi
failed=()
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if ((${#failed[@]} > 0)); then
	die "failed: ${failed[*]} (cache: $cache)"
fi
say "emulators ready in $cache ($(elapsed)s)"
