// Unit tests of the host/device math headers, compiled without torch.
// Each VJP is checked against central finite differences in double precision.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "moegs/covariance.h"

namespace {

int g_failures = 0;
int g_checks = 0;

void expect_close(const char* what, double got, double want, double tol) {
  ++g_checks;
  if (!(std::fabs(got - want) <= tol * (1.0 + std::fabs(want)))) {
    ++g_failures;
    std::printf("FAIL %s: got %.12g want %.12g\n", what, got, want);
  }
}

// Finite-difference gradient of f at x.
std::vector<double> numeric_grad(const std::function<double(const std::vector<double>&)>& f,
                                 std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

void test_covariance_vjp(std::mt19937& rng) {
  std::normal_distribution<double> n01(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.1, 2.0);
  for (int trial = 0; trial < 20; ++trial) {
    double w[9];
    for (double& v : w) v = n01(rng);  // cotangent, symmetric part is what matters
    const moegs::mat3<double> g = {{{w[0], w[1], w[2]}, {w[3], w[4], w[5]}, {w[6], w[7], w[8]}}};
    std::vector<double> x = {n01(rng), n01(rng), n01(rng), n01(rng), u(rng), u(rng), u(rng)};
    auto loss = [&](const std::vector<double>& p) {
      const auto c = moegs::quat_scale_to_covar(moegs::vec4<double>{p[0], p[1], p[2], p[3]},
                                                moegs::vec3<double>{p[4], p[5], p[6]});
      double l = 0;
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) l += g.m[i][j] * c.m[i][j];
      return l;
    };
    const auto num = numeric_grad(loss, x);
    moegs::vec4<double> vq;
    moegs::vec3<double> vs;
    moegs::quat_scale_to_covar_vjp(moegs::vec4<double>{x[0], x[1], x[2], x[3]},
                                   moegs::vec3<double>{x[4], x[5], x[6]}, g, &vq, &vs);
    const double ana[7] = {vq.w, vq.x, vq.y, vq.z, vs.x, vs.y, vs.z};
    for (int i = 0; i < 7; ++i) expect_close("quat_scale_to_covar_vjp", ana[i], num[i], 1e-6);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  test_covariance_vjp(rng);
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
