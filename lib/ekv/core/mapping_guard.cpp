#include "ekv/core/mapping_guard.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

namespace ekv {

namespace {

// Slots are claimed under a mutex and read by the handler without one: a slot's range is
// published last (release) and cleared first, so the handler never pairs a range with a
// half-written path.
struct Slot {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  char path[1024] = {};
};
std::array<Slot, 64> g_slots;
std::mutex g_claim;
std::once_flag g_installed;

void write_all(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t wrote = ::write(STDERR_FILENO, text, left);
    if (wrote <= 0) return;
    text += wrote, left -= std::size_t(wrote);
  }
}

// Async-signal-safe: atomics, write(2), _exit(2) and signal disposition only.
void on_bus_error(int signal, siginfo_t* info, void*) {
  const auto address = std::uintptr_t(info->si_addr);
  for (const Slot& slot : g_slots) {
    const std::uintptr_t begin = slot.begin.load(std::memory_order_acquire);
    if (begin != 0 && address >= begin && address < slot.end.load(std::memory_order_acquire)) {
      write_all("error: ");
      write_all(slot.path);
      write_all(": the file shrank while ekv was reading it (truncated or rewritten by another process); "
                "run again once it is complete\n");
      ::_exit(1);
    }
  }
  ::signal(signal, SIG_DFL);  // not a mapped file: die as the fault would have
  ::raise(signal);
}

void install_handler() {
  struct sigaction action {};
  action.sa_sigaction = on_bus_error;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, nullptr);
}

}  // namespace

int guard_mapping(const void* begin, std::size_t size, const std::filesystem::path& path) {
  std::call_once(g_installed, install_handler);
  std::lock_guard<std::mutex> lock(g_claim);
  for (std::size_t i = 0; i < g_slots.size(); ++i) {
    Slot& slot = g_slots[i];
    if (slot.begin.load(std::memory_order_relaxed) != 0) continue;
    const std::string text = path.string();
    const std::size_t length = std::min(text.size(), sizeof(slot.path) - 1);
    std::memcpy(slot.path, text.data(), length);
    slot.path[length] = '\0';
    slot.end.store(std::uintptr_t(begin) + size, std::memory_order_release);
    slot.begin.store(std::uintptr_t(begin), std::memory_order_release);
    return int(i);
  }
  return -1;
}

void unguard_mapping(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_claim);
  g_slots[std::size_t(slot)].begin.store(0, std::memory_order_release);
}

}  // namespace ekv
