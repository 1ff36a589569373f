/* LD_PRELOAD shim: CPUID reports an AVX2-only CPU (no AVX-512, no VNNI, no AMX, no AVX-VNNI, no BF16/FP16).
 *
 * Linux can make the CPUID instruction fault (arch_prctl ARCH_SET_CPUID, where /proc/cpuinfo lists
 * cpuid_fault). The fault arrives as SIGSEGV; the handler runs the real CPUID, clears the feature bits and
 * steps over the instruction. Libraries that choose kernels by CPUID (ONNX Runtime's MLAS, oneDNN in
 * OpenVINO and PyTorch, numpy) then run their AVX2 code at this core's own speed. The setting is per thread,
 * kept by threads and forks, and set again after exec by LD_PRELOAD. sigaction() is wrapped so that a
 * library installing its own SIGSEGV handler gets it chained behind this one instead of replacing it.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* leaf 7, subleaf 0 */
#define B_AVX512 ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define C_AVX512 ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define D_AVX512_AMX ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
/* leaf 7, subleaf 1: AVX-VNNI, AVX512_BF16, AVX-IFMA, AVX-VNNI-INT8, AMX-FP16 */
#define A1_VNNI ((1u << 4) | (1u << 5) | (1u << 23) | (1u << 21))

static struct sigaction next_segv;
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void cpuid_enabled(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
        cpuid_enabled(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        cpuid_enabled(0);
        if (leaf == 7 && sub == 0) {
            b &= ~B_AVX512;
            c &= ~C_AVX512;
            d &= ~D_AVX512_AMX;
        } else if (leaf == 7 && sub == 1) {
            a &= ~A1_VNNI;
        }
        r[REG_RAX] = a;
        r[REG_RBX] = b;
        r[REG_RCX] = c;
        r[REG_RDX] = d;
        r[REG_RIP] += 2;
        return;
    }
    if (next_segv.sa_flags & SA_SIGINFO && next_segv.sa_sigaction) {
        next_segv.sa_sigaction(sig, info, context);
    } else if (next_segv.sa_handler != SIG_DFL && next_segv.sa_handler != SIG_IGN && next_segv.sa_handler) {
        next_segv.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* a real fault: returning re-runs the instruction and dies as it should */
    }
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV) return real_sigaction(sig, act, old);
    if (old) *old = next_segv;
    if (act) next_segv = *act;
    return 0;
}

__attribute__((constructor)) static void hide_avx512(void) {
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    real_sigaction(SIGSEGV, &sa, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        static const char msg[] = "hide_avx512: this kernel or CPU cannot make CPUID fault (no cpuid_fault)\n";
        write(2, msg, sizeof msg - 1);
        _exit(2);
    }
}
