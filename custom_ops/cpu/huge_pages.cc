#include "cpu/huge_pages.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1; older C libraries lack the name
#endif
#endif

namespace icl::cpu {
namespace {

constexpr uintptr_t kBlock = uintptr_t{2} << 20;  // one huge page

// The 2 MiB-aligned blocks wholly inside a buffer: [first, last), empty when first >= last.
struct Blocks {
  uintptr_t first = 0;
  uintptr_t last = 0;
};

Blocks BlocksInside(const void* data, size_t bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  if (data == nullptr || begin > UINTPTR_MAX - kBlock || bytes > UINTPTR_MAX - begin) return {};
  return {(begin + kBlock - 1) & ~(kBlock - 1), (begin + bytes) & ~(kBlock - 1)};
}

enum class Mode { kOff, kBackground, kSync };

// ICL_ONNX_HUGE_PAGES: "0" off, "sync" during session creation, else (unset) in the background.
Mode ReadMode() {
  const char* value = std::getenv("ICL_ONNX_HUGE_PAGES");
  if (value != nullptr && std::strcmp(value, "0") == 0) return Mode::kOff;
  if (value != nullptr && std::strcmp(value, "sync") == 0) return Mode::kSync;
  return Mode::kBackground;
}

#if defined(__linux__)

bool Collapse(Blocks blocks) {
  if (blocks.first >= blocks.last) return false;
  // A refusal (EINVAL before Linux 6.1 or for a file mapping, EAGAIN or ENOMEM without a free
  // huge page) leaves the pages as they were; the kernels read them either way.
  return madvise(reinterpret_cast<void*>(blocks.first), blocks.last - blocks.first,
                 MADV_COLLAPSE) == 0;
}

// Set in a child of fork(): the collapser's thread does not exist there, and its lock may be
// held; the child collapses in the calling thread and never touches the collapser.
std::atomic<bool> forked_child{false};

// One thread that collapses the requested weights a block at a time, oldest request first.
// Created on the first request and never destroyed: the library is never unmapped (it links
// with -z nodelete), and a destructor run at exit could race the sessions still being torn down.
class Collapser {
 public:
  static Collapser& Get() {
    static Collapser* const collapser = new Collapser();
    return *collapser;
  }

  // The request's ticket; throws where the thread cannot be started or the queue not grow.
  uint64_t Submit(Blocks blocks) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) {
      std::thread([this] { Work(); }).detach();
      started_ = true;
    }
    const uint64_t ticket = next_ticket_++;
    jobs_.push_back({ticket, blocks});
    work_cv_.notify_one();
    return ticket;
  }

  // Drops the request if it waits, or stops it after the block in progress and waits for that.
  void Cancel(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (it->ticket == ticket) {
        jobs_.erase(it);
        return;
      }
    }
    if (running_ == ticket) {
      stop_running_ = true;
      idle_cv_.wait(lock, [&] { return running_ != ticket; });
    }
  }

 private:
  struct Job {
    uint64_t ticket;
    Blocks blocks;
  };

  Collapser() { pthread_atfork(&BeforeFork, &AfterForkParent, &AfterForkChild); }

  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return !jobs_.empty(); });
      const Job job = jobs_.front();
      jobs_.pop_front();
      running_ = job.ticket;
      stop_running_ = false;
      for (uintptr_t b = job.blocks.first; b < job.blocks.last && !stop_running_; b += kBlock) {
        lock.unlock();
        Collapse({b, b + kBlock});
        lock.lock();
      }
      running_ = 0;
      idle_cv_.notify_all();
    }
  }

  // A fork stops the collapsing: pages the parent collapsed after the fork would be copies of
  // pages the child still shares, one more copy of W in all. The child keeps the lock as the
  // forking thread took it, and never uses it.
  static void BeforeFork() {
    Collapser& c = Get();
    c.mu_.lock();
    c.jobs_.clear();
    c.stop_running_ = true;
  }
  static void AfterForkParent() { Get().mu_.unlock(); }
  static void AfterForkChild() { forked_child.store(true); }

  std::mutex mu_;
  std::condition_variable work_cv_;  // a request arrived
  std::condition_variable idle_cv_;  // the running request ended
  std::deque<Job> jobs_;
  uint64_t next_ticket_ = 1;
  uint64_t running_ = 0;  // the request being collapsed, 0 when none
  bool stop_running_ = false;
  bool started_ = false;
};

#endif  // __linux__

}  // namespace

void HugePages::Request(const void* data, size_t bytes) {
#if defined(__linux__)
  const Blocks blocks = BlocksInside(data, bytes);
  if (blocks.first >= blocks.last || ticket_ != 0) return;
  switch (ReadMode()) {
    case Mode::kOff:
      return;
    case Mode::kSync:
      Collapse(blocks);
      return;
    case Mode::kBackground:
      if (forked_child.load()) {
        Collapse(blocks);
        return;
      }
      // Huge pages are an optimisation: a thread or memory that cannot be had leaves W as it
      // is rather than failing the session.
      try {
        ticket_ = Collapser::Get().Submit(blocks);
      } catch (...) {
        ticket_ = 0;
      }
      return;
  }
#else
  (void)data;
  (void)bytes;
#endif
}

HugePages::~HugePages() {
#if defined(__linux__)
  if (ticket_ != 0 && !forked_child.load()) Collapser::Get().Cancel(ticket_);
#endif
}

}  // namespace icl::cpu
