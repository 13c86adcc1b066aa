# CPython C-API pieces that Cython's own cpython/*.pxd do not declare (or
# declare with object semantics we do not want on the hot path).

from cpython.object cimport PyObject


cdef extern from "Python.h":
    # Borrowed reference to the value now stored under key (the existing one,
    # or ``default`` if the key was absent): one hash lookup for insert-or-get.
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL

    # A fresh, uninitialised compact str; maxchar 127 gives a 1-byte ASCII
    # string we fill through PyUnicode_DATA.
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)

    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)


cdef extern from *:
    """
    /* A dict with room for minused items, so the environ never resizes while
       it fills. _PyDict_NewPresized is private; 3.13 moved it out of the
       public headers, so newer versions just get an empty dict. */
    #if PY_VERSION_HEX >= 0x030D0000
    #define fastwsgi_dict_presized(n) PyDict_New()
    #else
    #define fastwsgi_dict_presized(n) _PyDict_NewPresized(n)
    #endif
    """
    dict dict_presized "fastwsgi_dict_presized"(Py_ssize_t minused)
