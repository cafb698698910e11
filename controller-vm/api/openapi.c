/* The OpenAPI document (openapi.json beside this file), built into the
 * binary so that every cairnd serves the description of exactly the API it
 * runs. .incbin resolves the path from the directory make runs in (the
 * repository root); the trailing NUL makes it a C string. */
__asm__(".section .rodata\n"
	".global api_openapi_json\n"
	".type api_openapi_json, @object\n"
	".balign 16\n"
	"api_openapi_json:\n"
	".incbin \"controller-vm/api/openapi.json\"\n"
	".byte 0\n"
	".size api_openapi_json, . - api_openapi_json\n"
	".previous\n");
