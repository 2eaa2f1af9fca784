// The sha256 of a (large) file, computed once: a model's weights are hashed into its
// fingerprint, and re-reading gigabytes on every tool start would cost more than the run.
#pragma once

#include <filesystem>
#include <string>

namespace ekv {

// sha256 hex of the file's bytes. The result is cached in "<file>.ekv-sha256", keyed by the
// file's size and modification time (the make rule: an edit that keeps both is not seen). A
// cache that cannot be written (a read-only folder) is skipped; the digest is then recomputed.
std::string cached_file_sha256(const std::filesystem::path& path);

}  // namespace ekv
