// The compiled module moegs._C. Importing it runs the static TORCH_LIBRARY
// registrations of every op file; the module itself exports nothing.
#include <Python.h>

static struct PyModuleDef moegs_c_module = {PyModuleDef_HEAD_INIT, "_C",
                                            "moegs compiled ops (see torch.ops.moegs)", -1,
                                            nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&moegs_c_module); }
