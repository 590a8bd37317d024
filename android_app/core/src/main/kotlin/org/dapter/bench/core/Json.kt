package org.dapter.bench.core

/**
 * A minimal JSON writer for the result file: objects, arrays, strings, numbers, booleans, null.
 *
 * Written by hand because the core must run unchanged on the JVM and on Android and so takes no
 * dependency: Android's built-in `org.json` is a stub off the device, and a serialization library
 * would add a compiler plugin to both builds for one flat object.
 */
object Json {
    /** [value] as compact JSON on one line (so that it also fits one logcat line). */
    fun write(value: Any?): String = StringBuilder().also { append(it, value) }.toString()

    private fun append(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")
            is String -> appendString(out, value)
            is Boolean -> out.append(value)
            is Int, is Long, is Short, is Byte -> out.append(value)
            // JSON has no NaN or infinity: an undefined figure is written as null.
            is Double -> if (value.isFinite()) out.append(value) else out.append("null")
            is Float -> append(out, value.toDouble())
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    appendString(out, k.toString())
                    out.append(':')
                    append(out, v)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                value.forEachIndexed { i, v ->
                    if (i > 0) out.append(',')
                    append(out, v)
                }
                out.append(']')
            }
            is IntArray -> append(out, value.toList())
            else -> throw IllegalArgumentException("cannot write a ${value::class.simpleName} as JSON")
        }
    }

    private fun appendString(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                '\b' -> out.append("\\b")
                '\u000c' -> out.append("\\f")
                else -> if (c < ' ') out.append("\\u%04x".format(c.code)) else out.append(c)
            }
        }
        out.append('"')
    }
}
