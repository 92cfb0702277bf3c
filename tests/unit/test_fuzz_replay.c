/* Replays the fuzz targets' inputs through the same harness, without
 * libFuzzer: every crasher kept in tests/fuzz/regressions/<target>/ and
 * every seed in tests/fuzz/corpus/<target>/, one Check test each (in its
 * own process, as run.sh runs Check in fork mode). A crasher that comes
 * back aborts its test; `make test SANITIZE=1` replays them under ASan. */
#define FUZZ_NO_ENTRY
#include "../fuzz/harness.c"
#include "../fuzz/fuzz_backend.c"
#include "../fuzz/fuzz_client.c"

#include <check.h>

#define MAX_FILES 2048

struct input {
    bool client; /* for fuzz_client, else fuzz_backend */
    char *path;
};

static struct input inputs[MAX_FILES];
static int ninputs;

static void list_dir(bool client, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return; /* none yet */
    struct dirent *e;
    while ((e = readdir(d)) && ninputs < MAX_FILES) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        snprintf(p, len, "%s/%s", dir, e->d_name);
        inputs[ninputs++] = (struct input){client, p};
    }
    closedir(d);
}

START_TEST(replay)
{
    const struct input *in = &inputs[_i];
    FILE *f = fopen(in->path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", in->path);
    static uint8_t data[1 << 20];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    fz_input_name = in->path;
    if (in->client) fuzz_client_init();
    else fuzz_backend_init();
    /* Twice: the second run starts from the state the first one left. */
    for (int round = 0; round < 2; round++) {
        if (in->client) fuzz_client_one(data, n);
        else fuzz_backend_one(data, n);
    }
}
END_TEST

int main(void)
{
    /* Crashers first: a failure's index then points at one of them. */
    list_dir(true, "tests/fuzz/regressions/client");
    list_dir(false, "tests/fuzz/regressions/backend");
    list_dir(true, "tests/fuzz/corpus/client");
    list_dir(false, "tests/fuzz/corpus/backend");
    Suite *s = suite_create("fuzz_replay");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, replay, 0, ninputs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK); /* the harness sets up once per process */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
