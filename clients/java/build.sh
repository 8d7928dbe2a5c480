#!/usr/bin/env bash
# Builds the Java client with javac alone (no Maven or Gradle), for Java 8
# and later (--release 8, so Android can use it).
#
#   ./build.sh          compile the client into build/classes
#   ./build.sh test     compile the client and its tests, run the tests
#                       against the broker ($HYDROGEN_BROKER, or built from
#                       the repository with go build); extra arguments
#                       filter the tests by name
#   ./build.sh test-classes   only compile the client and its tests
#   ./build.sh run-tests      only run the tests compiled before (filters as for test)
#   ./build.sh jar      build/hydrogen-client.jar
#   ./build.sh clean    remove build/
set -euo pipefail
cd "$(dirname "$0")"

JAVAC=${JAVAC:-javac}
JAVA=${JAVA:-java}
JAR=${JAR:-jar}
# --release 8 is obsolete in newer JDKs but still supported; say so once, not per build.
FLAGS=(--release 8 -encoding UTF-8 -Xlint:all,-options -Werror)

compile_main() {
	rm -rf build/classes
	mkdir -p build/classes
	find src/main/java -name '*.java' >build/main-sources.txt
	"$JAVAC" "${FLAGS[@]}" -d build/classes @build/main-sources.txt
}

compile_tests() {
	compile_main
	rm -rf build/test-classes
	mkdir -p build/test-classes
	find src/test/java -name '*.java' >build/test-sources.txt
	"$JAVAC" "${FLAGS[@]}" -Xlint:-try -cp build/classes -d build/test-classes @build/test-sources.txt
}

run_tests() {
	if [ ! -d build/test-classes ]; then
		echo "build.sh: no build/test-classes; run ./build.sh test or test-classes first" >&2
		exit 2
	fi
	"$JAVA" -cp build/classes:build/test-classes com.github.hydrogenmq.client.TestRunner "$@"
}

cmd=${1:-build}
case "$cmd" in
build)
	compile_main
	echo "build/classes"
	;;
test)
	shift
	compile_tests
	run_tests "$@"
	;;
test-classes)
	compile_tests
	echo "build/classes build/test-classes"
	;;
run-tests)
	shift
	run_tests "$@"
	;;
jar)
	compile_main
	"$JAR" cf build/hydrogen-client.jar -C build/classes .
	echo "build/hydrogen-client.jar"
	;;
clean)
	rm -rf build
	;;
-h | --help | help)
	sed -n '2,13p' "$0"
	;;
*)
	echo "build.sh: unknown command: $cmd (build, test, test-classes, run-tests, jar, clean)" >&2
	exit 2
	;;
esac
