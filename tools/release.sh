#!/usr/bin/env bash
# Builds (once) and finds the `ringkv` binary of a previous release named in
# RELEASES, so that upgrade tests and benchmarks can run it next to the
# current build.
#
#   tools/release.sh list                      the releases RELEASES names
#   tools/release.sh bin VERSION [--release]   the path of VERSION's binary
#
# `bin` checks the release's commit out in a detached worktree,
# target/releases/src/VERSION, builds it with its own Cargo.lock into
# target/releases/build (never target/debug or target/release, which the
# current build and its running tests use), and copies the binary to
# target/releases/VERSION/{debug,release}/ringkv with the commit it was
# built from next to it (`commit`). A later call whose commit matches
# prints the path at once. Builds hold an flock on target/releases/lock, so
# two callers (two test processes, say) never build into the same directory
# at once: the second waits and then finds the binary built.
#
# Only the path goes to stdout; git's and cargo's output goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
releases_file="$root/RELEASES"
base="$root/target/releases"

die() {
  echo "release.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: tools/release.sh list | bin VERSION [--release]" >&2
  exit 2
}

# The data lines of RELEASES: comments and blank lines dropped.
entries() {
  [ -f "$releases_file" ] || die "no RELEASES file at $releases_file"
  grep -v -E '^[[:space:]]*(#|$)' "$releases_file"
}

# The commit RELEASES names for version $1 (empty if none).
commit_of() {
  entries | awk -v v="$1" '$1 == v { print $2; exit }'
}

cmd_list() {
  printf '%-8s %-12s %-9s %-5s %s\n' VERSION COMMIT PROTOCOL LOG NOTE
  entries | while read -r version commit protocol format note; do
    printf '%-8s %-12s %-9s %-5s %s\n' "$version" "${commit:0:12}" "$protocol" "$format" "$note"
  done
}

# Prints the cached binary of $1 (profile $2, commit $3) and succeeds, if
# it is there and was built from that commit.
cached() {
  local out="$base/$1/$2"
  [ -x "$out/ringkv" ] && [ -f "$out/commit" ] && [ "$(cat "$out/commit")" = "$3" ] || return 1
  echo "$out/ringkv"
}

# A worktree of the repository at commit $2 in directory $1.
checkout() {
  local dir="$1" commit="$2"
  if [ -e "$dir/.git" ] && git -C "$dir" rev-parse --git-dir >/dev/null 2>&1; then
    if [ "$(git -C "$dir" rev-parse HEAD)" != "$commit" ]; then
      git -C "$dir" checkout --quiet --force --detach "$commit" >&2
    fi
    return
  fi
  # A directory left by a worktree that git no longer knows (pruned, or
  # the clone moved): start it again.
  rm -rf "$dir"
  git -C "$root" worktree prune >&2
  mkdir -p "$(dirname "$dir")"
  git -C "$root" worktree add --quiet --detach "$dir" "$commit" >&2
}

cmd_bin() {
  local version="$1" profile="$2"
  local commit
  commit="$(commit_of "$version")"
  if [ -z "$commit" ]; then
    die "unknown release '$version'; RELEASES names: $(entries | awk '{ print $1 }' | tr '\n' ' ')"
  fi
  cached "$version" "$profile" "$commit" && return 0
  if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
    local why=""
    if [ "$(git -C "$root" rev-parse --is-shallow-repository)" = true ]; then
      why=" (this is a shallow clone: run 'git fetch --unshallow')"
    fi
    die "release $version's commit $commit is not in this clone$why"
  fi
  mkdir -p "$base"
  exec 9>"$base/lock"
  flock 9
  # Another caller may have built it while this one waited for the lock.
  cached "$version" "$profile" "$commit" && return 0
  local src="$base/src/$version"
  echo "release.sh: building ringkv $version ($commit, $profile) in $src" >&2
  checkout "$src" "$commit"
  local flags=(--locked --bin ringkv)
  [ "$profile" = release ] && flags+=(--release)
  (cd "$src" && CARGO_TARGET_DIR="$base/build" cargo build "${flags[@]}" 1>&2) ||
    die "building release $version failed (see cargo's output above)"
  local out="$base/$version/$profile"
  mkdir -p "$out"
  # Copy, then rename: a caller that skips the lock (the cached check)
  # never sees a half-written binary, and the commit is written last.
  cp "$base/build/$profile/ringkv" "$out/ringkv.tmp"
  mv -f "$out/ringkv.tmp" "$out/ringkv"
  echo "$commit" >"$out/commit.tmp"
  mv -f "$out/commit.tmp" "$out/commit"
  echo "$out/ringkv"
}

[ $# -ge 1 ] || usage
case "$1" in
  list)
    [ $# -eq 1 ] || usage
    cmd_list
    ;;
  bin)
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    profile=debug
    if [ $# -eq 3 ]; then
      [ "$3" = --release ] || usage
      profile=release
    fi
    cmd_bin "$2" "$profile"
    ;;
  *)
    usage
    ;;
esac
