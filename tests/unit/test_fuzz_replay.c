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

/* Every directory must be there and hold inputs: a missing or empty one (a
 * run from another directory, a lost corpus) would otherwise replay nothing
 * and pass. Paths are relative to the repository root, where run.sh runs. */
static struct dir {
    bool client;
    const char *path;
    int found;      /* inputs listed, or -1 when the directory cannot be read */
    int open_errno;
    bool truncated; /* more files than MAX_FILES */
} dirs[] = {
    /* Crashers first: a failure's index then points at one of them. */
    {true, "tests/fuzz/regressions/client", 0, 0, false},
    {false, "tests/fuzz/regressions/backend", 0, 0, false},
    {true, "tests/fuzz/corpus/client", 0, 0, false},
    {false, "tests/fuzz/corpus/backend", 0, 0, false},
};
#define NDIRS ((int)(sizeof(dirs) / sizeof(dirs[0])))

static void list_dir(struct dir *dir)
{
    DIR *d = opendir(dir->path);
    if (!d) {
        dir->found = -1;
        dir->open_errno = errno;
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (ninputs == MAX_FILES) {
            dir->truncated = true;
            break;
        }
        size_t len = strlen(dir->path) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            perror("test_fuzz_replay: malloc");
            exit(1);
        }
        snprintf(p, len, "%s/%s", dir->path, e->d_name);
        inputs[ninputs++] = (struct input){dir->client, p};
        dir->found++;
    }
    closedir(d);
}

START_TEST(inputs_found)
{
    const struct dir *dir = &dirs[_i];
    ck_assert_msg(dir->found >= 0, "cannot read %s: %s", dir->path, strerror(dir->open_errno));
    ck_assert_msg(dir->found > 0, "%s holds no inputs", dir->path);
    ck_assert_msg(!dir->truncated, "%s: more than %d inputs in all, raise MAX_FILES", dir->path,
                  MAX_FILES);
}
END_TEST

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
    for (int i = 0; i < NDIRS; i++) list_dir(&dirs[i]);
    Suite *s = suite_create("fuzz_replay");
    TCase *found = tcase_create("inputs");
    tcase_add_loop_test(found, inputs_found, 0, NDIRS);
    suite_add_tcase(s, found);
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
