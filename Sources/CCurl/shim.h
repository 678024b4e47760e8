#ifndef IMPRINT_CCURL_SHIM_H
#define IMPRINT_CCURL_SHIM_H
#include <stdint.h>
#include <curl/curl.h>
#include <sys/types.h>
#include <sys/xattr.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed
 * wrapper per argument kind. */
static inline CURLcode imprint_curl_set_long(CURL *curl, CURLoption option, long value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode imprint_curl_set_off(CURL *curl, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode imprint_curl_set_string(CURL *curl, CURLoption option, const char *value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode imprint_curl_set_pointer(CURL *curl, CURLoption option, void *value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode imprint_curl_set_list(CURL *curl, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(curl, option, value);
}
typedef size_t (*imprint_curl_data_callback)(char *data, size_t size, size_t count, void *context);
static inline CURLcode imprint_curl_set_write(CURL *curl, imprint_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(curl, CURLOPT_WRITEDATA, context);
}
static inline CURLcode imprint_curl_set_read(CURL *curl, imprint_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(curl, CURLOPT_READFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(curl, CURLOPT_READDATA, context);
}
static inline CURLcode imprint_curl_set_header_callback(CURL *curl, imprint_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(curl, CURLOPT_HEADERDATA, context);
}
typedef int (*imprint_curl_progress_callback)(void *context, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static inline CURLcode imprint_curl_set_progress(CURL *curl, imprint_curl_progress_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, callback);
    if (rc == CURLE_OK) rc = curl_easy_setopt(curl, CURLOPT_XFERINFODATA, context);
    return rc != CURLE_OK ? rc : curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
}
static inline CURLcode imprint_curl_get_long(CURL *curl, CURLINFO info, long *value) {
    return curl_easy_getinfo(curl, info, value);
}
static inline CURLcode imprint_curl_get_string(CURL *curl, CURLINFO info, char **value) {
    return curl_easy_getinfo(curl, info, value);
}
static inline CURLcode imprint_curl_get_off(CURL *curl, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(curl, info, value);
}
/* Glibc's Swift module leaves out <sys/xattr.h>; a download's .partial file keeps the remote
 * ETag/Last-Modified there so a later run knows whether it may resume it. */
static inline int imprint_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0);
}
static inline ssize_t imprint_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}
static inline int imprint_fremovexattr(int fd, const char *name) {
    return fremovexattr(fd, name);
}
#endif
